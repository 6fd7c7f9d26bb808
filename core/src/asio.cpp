// core/src/asio.cpp — Asio's implementation, compiled once for the whole project.
#include <asio/impl/src.hpp>
