// include/data_bridge/pyloop/convert.hpp — native values to Python objects, on the loop's thread.
//
// A native future's value is kept as a C++ value until the loop's thread converts it with the
// GIL: to_python(value) returns a new reference or null with a Python exception set. The
// overloads cover None (std::monostate, or a promise<void>), bool, integers, floats, str
// (std::string, UTF-8), bytes (data_bridge::pyloop::bytes), an owned Python object
// (py_object), zero-copy memory (native_buffer), and std::pair / std::tuple / std::vector of
// those. An extension adds its own by declaring to_python(T&&) in T's namespace.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "data_bridge/pyloop/api.hpp"
#include "data_bridge/pyloop/buffer.hpp"

namespace data_bridge::pyloop {

// Bytes for Python's bytes type (std::string converts to str).
struct bytes {
  std::string data;  // the content, copied once into the bytes object
};

inline PyObject* to_python(std::monostate) noexcept { Py_RETURN_NONE; }
inline PyObject* to_python(bool value) noexcept { return PyBool_FromLong(value); }
template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
PyObject* to_python(T value) noexcept {
  if constexpr (std::is_signed_v<T>) {
    return PyLong_FromLongLong(static_cast<long long>(value));
  } else {
    return PyLong_FromUnsignedLongLong(static_cast<unsigned long long>(value));
  }
}
template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
PyObject* to_python(T value) noexcept {
  return PyFloat_FromDouble(static_cast<double>(value));
}
inline PyObject* to_python(const std::string& text) noexcept {
  return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
}
inline PyObject* to_python(const bytes& b) noexcept {
  return PyBytes_FromStringAndSize(b.data.data(), static_cast<Py_ssize_t>(b.data.size()));
}
inline PyObject* to_python(py_object&& o) noexcept {
  if (!o) Py_RETURN_NONE;
  return o.release();
}
inline PyObject* to_python(native_buffer&& b) noexcept { return b.release_to_python(); }

template <class T>
PyObject* to_python(std::vector<T>&& items) noexcept;
template <class... T>
PyObject* to_python(std::tuple<T...>&& items) noexcept;
template <class A, class B>
PyObject* to_python(std::pair<A, B>&& items) noexcept {
  return to_python(std::tuple<A, B>(std::move(items.first), std::move(items.second)));
}

template <class T>
PyObject* to_python(std::vector<T>&& items) noexcept {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(items.size()));
  if (list == nullptr) return nullptr;
  for (std::size_t i = 0; i < items.size(); ++i) {
    PyObject* item = to_python(std::move(items[i]));
    if (item == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), item);
  }
  return list;
}

template <class... T>
PyObject* to_python(std::tuple<T...>&& items) noexcept {
  PyObject* tuple = PyTuple_New(sizeof...(T));
  if (tuple == nullptr) return nullptr;
  bool ok = true;
  Py_ssize_t index = 0;
  std::apply(
      [&](auto&... item) {
        ((ok = ok && [&] {
           PyObject* o = to_python(std::move(item));
           if (o == nullptr) return false;
           PyTuple_SET_ITEM(tuple, index++, o);
           return true;
         }()),
         ...);
      },
      items);
  if (!ok) {
    Py_DECREF(tuple);
    return nullptr;
  }
  return tuple;
}

}  // namespace data_bridge::pyloop
