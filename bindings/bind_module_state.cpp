// bindings/bind_module_state.cpp — creation of the module state and the glue installer.
#include "module_state.hpp"

#include "handle_object.hpp"

namespace pyloop::bindings {
namespace {

module_state* current_state = nullptr;  // owned by the "_state" capsule on the module

void install_glue(nb::object report_handle_exception, nb::object handle_repr,
                  nb::object extract_stack) {
  module_state& s = state();
  s.report_handle_exception = std::move(report_handle_exception);
  s.handle_repr = std::move(handle_repr);
  s.extract_stack = std::move(extract_stack);
}

}  // namespace

module_state& state() noexcept { return *current_state; }

module_state* state_if_alive() noexcept { return current_state; }

module_state::~module_state() {
  for (handle_freelist* list : {&free_handles, &free_timer_handles}) {
    while (list->count > 0) PyObject_GC_Del(list->items[--list->count]);
  }
}

void export_module_state(nb::module_& m) {
  current_state = new module_state();
  nb::capsule owner(current_state, [](void* p) noexcept {
    delete static_cast<module_state*>(p);
    current_state = nullptr;
  });
  m.attr("_state") = owner;

  module_state& s = *current_state;
  nb::module_ asyncio = nb::module_::import_("asyncio");
  s.future_type = asyncio.attr("Future");
  s.task_type = asyncio.attr("Task");
  nb::module_ socket = nb::module_::import_("socket");
  s.gaierror = socket.attr("gaierror");
  s.socket_type = socket.attr("socket");
  s.kwnames_loop = nb::make_tuple("loop");
  s.kwnames_loop_name_context = nb::make_tuple("loop", "name", "context");
  auto interned = [](const char* name) { return nb::steal(PyUnicode_InternFromString(name)); };
  s.str_context = interned("context");
  s.str_check_thread = interned("_check_thread");
  s.str_check_callback = interned("_check_callback");
  s.str_run_handle_debug = interned("_run_handle_debug");
  s.str_create_task_with_factory = interned("_create_task_with_factory");
  s.str_handle_signal = interned("_handle_signal");
  s.str_log_slow_callback = interned("_log_slow_callback");
  s.str_slow_callback_duration = interned("slow_callback_duration");
  s.str_on_write_error = interned("_on_write_error");
  s.str_maybe_pause_protocol = interned("_maybe_pause_protocol");
  s.str_maybe_resume_protocol = interned("_maybe_resume_protocol");
  s.str_protocol_paused = interned("_protocol_paused");
  s.str_on_drained = interned("_on_drained");
  s.str_on_eof = interned("_on_eof");
  s.str_fatal_error = interned("_fatal_error");
  s.str_protocol_error = interned("_protocol_error");
  s.str_data_received = interned("data_received");
  s.str_get_buffer = interned("get_buffer");
  s.str_buffer_updated = interned("buffer_updated");
  s.minus_one = nb::steal(PyLong_FromLong(-1));
  s.str_fileno = interned("fileno");
  s.str_gettimeout = interned("gettimeout");
  s.str_create_future = interned("create_future");
  s.str_ensure_fd_no_transport = interned("_ensure_fd_no_transport");
  s.str_done = interned("done");
  s.str_set_result = interned("set_result");
  s.str_set_exception = interned("set_exception");

  m.def("_install_glue", &install_glue, nb::arg("report_handle_exception"),
        nb::arg("handle_repr"), nb::arg("extract_stack"),
        "Installs the Python helpers the native loop calls on its slow paths.");
}

}  // namespace pyloop::bindings
