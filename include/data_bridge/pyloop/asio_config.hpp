// include/data_bridge/pyloop/asio_config.hpp — the Asio configuration a translation unit was
// compiled with, as the DB_PYLOOP_ASIO_* flags of c_api.h. PyLoop publishes its own in the C
// API; api.hpp compares an extension's with it, since both sides share Asio objects.
#pragma once

#include <asio/detail/config.hpp>

#include "data_bridge/pyloop/c_api.h"

namespace data_bridge::pyloop::detail {

// Inline and evaluated where it is used: each shared object gets its own macros' answer.
constexpr unsigned local_asio_config() noexcept {
  unsigned flags = 0;
#ifdef ASIO_STANDALONE
  flags |= DB_PYLOOP_ASIO_STANDALONE;
#endif
#ifdef ASIO_NO_DEPRECATED
  flags |= DB_PYLOOP_ASIO_NO_DEPRECATED;
#endif
#ifdef ASIO_NO_TYPEID
  flags |= DB_PYLOOP_ASIO_NO_TYPEID;
#endif
#ifdef ASIO_HAS_STD_ALIGNED_ALLOC
  flags |= DB_PYLOOP_ASIO_STD_ALIGNED_ALLOC;
#endif
  return flags;
}

}  // namespace data_bridge::pyloop::detail
