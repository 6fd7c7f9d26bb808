// include/data_bridge/pyloop/pyloop.hpp — the whole native bridge: include this one header.
#pragma once

#include "data_bridge/pyloop/api.hpp"
#include "data_bridge/pyloop/buffer.hpp"
#include "data_bridge/pyloop/convert.hpp"
#include "data_bridge/pyloop/coroutine.hpp"
#include "data_bridge/pyloop/executor.hpp"
#include "data_bridge/pyloop/future.hpp"
#include "data_bridge/pyloop/runtime.hpp"
