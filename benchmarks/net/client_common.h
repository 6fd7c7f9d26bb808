/*
 * benchmarks/net/client_common.h -- what the load clients (echo_client.c, paired_client.c)
 * share: the JSON error exit and the pattern their messages are cut from.
 */
#ifndef CLIENT_COMMON_H
#define CLIENT_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Prints {"error": "..."} on stdout (the harness reads it) and exits with status 1. */
static void fail(const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* JSON-escape the few characters that could appear in an errno message. */
    printf("{\"error\": \"");
    for (const char *p = text; *p; p++) {
        if (*p == '"' || *p == '\\')
            putchar('\\');
        putchar((unsigned char)*p >= 0x20 ? *p : ' ');
    }
    printf("\"}\n");
    fflush(stdout);
    exit(1);
}

/*
 * Messages are windows of one pseudo-random buffer, starting at an offset below
 * PATTERN_SLACK that changes from request to request: consecutive requests carry different
 * bytes (a stale or repeated echo fails the compare) and nothing is generated per request.
 */
#define PATTERN_SLACK 4093

/* A buffer of size + PATTERN_SLACK pseudo-random bytes (xorshift), the same on every run. */
static unsigned char *make_pattern(size_t size)
{
    unsigned char *pattern = malloc(size + PATTERN_SLACK);
    if (!pattern)
        fail("out of memory");
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < size + PATTERN_SLACK; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)(x >> 24);
    }
    return pattern;
}

#endif
