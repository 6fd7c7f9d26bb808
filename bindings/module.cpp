// bindings/module.cpp — the extension data_bridge.pyloop._pyloop: exports in dependency order.
#include <nanobind/nanobind.h>

#include "handle_object.hpp"
#include "loop_object.hpp"
#include "module_state.hpp"
#include "native_link.hpp"
#include "tls_session_object.hpp"

NB_MODULE(_pyloop, m) {
  using namespace pyloop::bindings;
  m.doc() = "Native engine of data_bridge.pyloop (C++20 core on Asio).";
  export_module_state(m);
  export_handle(m);
  export_loop(m);
  export_stream_io(m);
  export_tls_session(m);
  export_sock_ops(m);
  export_pipe(m);
  export_datagram_io(m);
  export_subprocess(m);
  export_child_watch(m);
  export_file_io(m);
  export_native_buffer(m);
  export_native_future(m);
  export_native_bridge(m);
}
