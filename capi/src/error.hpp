// One failure type inside the library: a status and a one-line message for prt_last_error().
#pragma once

#include <stdexcept>
#include <string>

#include "parnet_rt.h"

namespace prt {

class Error : public std::runtime_error {
  public:
    Error(prt_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
    prt_status status() const { return status_; }

  private:
    prt_status status_;
};

[[noreturn]] inline void fail(prt_status status, const std::string &message) { throw Error(status, message); }

}  // namespace prt
