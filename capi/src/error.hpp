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

// Text from an untrusted file, made safe to quote in a message: every byte outside printable
// ASCII becomes \xNN (so a NUL cannot cut the message short, nor a newline split it), at most
// `max` bytes of `s` are shown, then "...".
inline std::string printable(const std::string &s, size_t max = 80) {
    static const char *hex = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; i++) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return s.size() > max ? out + "..." : out;
}

}  // namespace prt
