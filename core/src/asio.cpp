// core/src/asio.cpp — Asio's implementation, compiled once for the whole project.
//
// A C++ library header first: Asio decides whether it allocates handler memory with
// std::aligned_alloc (freed with free) or with operator new by looking for libstdc++'s
// _GLIBCXX_HAVE_ALIGNED_ALLOC, which only a C++ library header defines. Every other file
// (and every extension sharing the loop, decision 0025) sees one before Asio; this one must
// decide the same way, or memory allocated on one side is freed the other way.
#include <cstdlib>

#include <asio/impl/src.hpp>

#ifndef ASIO_HAS_STD_ALIGNED_ALLOC
#error "Asio must allocate with std::aligned_alloc here, as in every file that includes it"
#endif
