// include/data_bridge/pyloop/buffer.hpp — zero-copy buffers both ways: native memory lent to Python
// (native_buffer) and Python memory read by native code (buffer_view).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "data_bridge/pyloop/api.hpp"

namespace data_bridge::pyloop {

// Native memory handed to Python without a copy: to_python() turns it into a NativeBuffer
// (buffer protocol: memoryview(), bytes(), hashlib, socket.send... read it in place). The
// container is kept alive until the NativeBuffer and every memoryview of it are gone.
// Thread safety: a plain value until converted; convert with the GIL (to_python).
class native_buffer {
 public:
  native_buffer() = default;
  // Takes over a contiguous container of bytes (std::vector<char>, std::string, ...).
  template <class Container,
            class = std::enable_if_t<!std::is_same_v<std::decay_t<Container>, native_buffer>>>
  explicit native_buffer(Container&& bytes, bool writable = true)
      : owner_(new holder<std::decay_t<Container>>(std::forward<Container>(bytes))),
        writable_(writable) {}

  std::byte* data() const noexcept { return owner_ ? owner_->data() : nullptr; }
  std::size_t size() const noexcept { return owner_ ? owner_->size() : 0; }

  // GIL. A new NativeBuffer over the memory (this becomes empty), or null with an exception.
  PyObject* release_to_python() noexcept {
    base* owner = owner_.release();
    if (owner == nullptr) owner = new (std::nothrow) holder<std::vector<std::byte>>();
    if (owner == nullptr) return PyErr_NoMemory();
    return api().buffer_new(owner->data(), static_cast<Py_ssize_t>(owner->size()), writable_ ? 1 : 0,
                            [](void* o) { delete static_cast<base*>(o); }, owner);
  }

 private:
  struct base {
    virtual ~base() = default;
    virtual std::byte* data() noexcept = 0;
    virtual std::size_t size() noexcept = 0;
  };
  template <class C>
  struct holder final : base {
    holder() = default;
    explicit holder(C&& c) : bytes(std::move(c)) {}
    explicit holder(const C& c) : bytes(c) {}
    std::byte* data() noexcept override {
      return reinterpret_cast<std::byte*>(std::data(bytes));
    }
    std::size_t size() noexcept override {
      return std::size(bytes) * sizeof(*std::data(bytes));
    }
    C bytes;  // the memory Python sees
  };
  std::unique_ptr<base> owner_;  // the container, until handed to Python
  bool writable_ = true;         // Python views may write into it
};

// A Python object's memory read in place (bytes, bytearray, memoryview, array, mmap...):
// acquired with the GIL, then readable from any thread (a pool thread) without it; released
// (PyBuffer_Release, with the GIL, taken by the destructor) when the view goes.
// The exporter stays alive and, for bytearray, cannot be resized while the view exists.
// Thread safety: one owner at a time; construct with the GIL.
class buffer_view {
 public:
  buffer_view() noexcept = default;
  // GIL. Throws python_error (TypeError for objects without the buffer protocol, BufferError
  // for non-contiguous memory).
  explicit buffer_view(PyObject* exporter, bool writable = false) {
    if (PyObject_GetBuffer(exporter, &view_, writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS
                                                      : PyBUF_C_CONTIGUOUS) < 0) {
      throw python_error();
    }
    held_ = true;
  }
  buffer_view(buffer_view&& other) noexcept : view_(other.view_), held_(std::exchange(other.held_, false)) {}
  buffer_view& operator=(buffer_view&& other) noexcept {
    if (this != &other) {
      reset();
      view_ = other.view_;
      held_ = std::exchange(other.held_, false);
    }
    return *this;
  }
  buffer_view(const buffer_view&) = delete;
  buffer_view& operator=(const buffer_view&) = delete;
  ~buffer_view() { reset(); }

  std::span<const std::byte> bytes() const noexcept {
    return {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(held_ ? view_.len : 0)};
  }
  std::span<std::byte> writable_bytes() const noexcept {
    return {static_cast<std::byte*>(view_.buf), static_cast<std::size_t>(held_ ? view_.len : 0)};
  }
  std::size_t size() const noexcept { return held_ ? static_cast<std::size_t>(view_.len) : 0; }

  // Releases the Python buffer now (takes the GIL).
  void reset() noexcept {
    if (!std::exchange(held_, false) || !detail::python_alive()) return;
    gil_guard gil;
    PyBuffer_Release(&view_);
  }

 private:
  Py_buffer view_{};   // the exporter's memory and a reference to the exporter
  bool held_ = false;  // view_ must be released
};

}  // namespace data_bridge::pyloop
