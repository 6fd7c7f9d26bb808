// examples/native_extension/src/hashing.hpp — a 64-bit hash of a byte range (CPU work for the pool).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace example {

// Eight bytes at a time, each word mixed by a multiply and xor-shifts; the tail and the length
// are folded in at the end. Not cryptographic: a steady CPU load that reads every byte.
inline std::uint64_t hash64(std::span<const std::byte> data, std::uint64_t seed = 0x9E3779B97F4A7C15ull) {
  constexpr std::uint64_t k = 0xFF51AFD7ED558CCDull;
  std::uint64_t h = seed ^ (data.size() * k);
  std::size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, data.data() + i, 8);
    w *= k;
    w ^= w >> 29;
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 32;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, data.data() + i, data.size() - i);
  h = (h ^ tail) * k;
  h ^= h >> 33;
  return h;
}

}  // namespace example
