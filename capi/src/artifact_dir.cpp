#include "artifact_dir.hpp"

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.hpp"

namespace prt {
namespace {

bool name_char(char c, bool first) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    return alnum || (!first && (c == '.' || c == '_' || c == '-'));
}

std::string hex(const unsigned char *digest, unsigned int length) {
    static const char *hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; i++) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 15];
    }
    return out;
}

std::string sha256_hex(const std::string &data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1)
        fail(PRT_E_RUNTIME, "sha256 failed (OpenSSL)");
    return hex(digest, length);
}

// sha256 of the file's bytes in 1 MiB chunks: a file is checked before any buffer of its size
// exists (a sparse 16 GiB file costs time, not memory). Rewinds the file.
std::string sha256_stream(int fd, uint64_t limit, const std::string &what) {
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX *)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) fail(PRT_E_RUNTIME, "sha256 failed (OpenSSL)");
    std::vector<char> chunk(1 << 20);
    for (uint64_t total = 0; total <= limit;) {  // a file still growing is not hashed forever
        const ssize_t n = ::read(fd, chunk.data(), chunk.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(PRT_E_INCOMPATIBLE, what + ": read failed: " + std::strerror(errno));
        if (n == 0) break;
        total += static_cast<uint64_t>(n);
        if (EVP_DigestUpdate(ctx.get(), chunk.data(), static_cast<size_t>(n)) != 1) fail(PRT_E_RUNTIME, "sha256 failed (OpenSSL)");
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(ctx.get(), digest, &length) != 1) fail(PRT_E_RUNTIME, "sha256 failed (OpenSSL)");
    if (::lseek(fd, 0, SEEK_SET) != 0) fail(PRT_E_INCOMPATIBLE, what + ": cannot rewind");
    return hex(digest, length);
}

std::string read_all(int fd, uint64_t expected, const std::string &what) {
    std::string data;
    try {
        data.resize(static_cast<size_t>(expected));
    } catch (const std::bad_alloc &) {
        fail(PRT_E_NO_MEMORY, what + ": cannot allocate " + std::to_string(expected) + " bytes");
    }
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::read(fd, &data[done], data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail(PRT_E_INCOMPATIBLE, what + ": shorter than its recorded size (changed while reading?)");
        done += static_cast<size_t>(n);
    }
    char extra;
    if (::read(fd, &extra, 1) > 0) fail(PRT_E_INCOMPATIBLE, what + ": longer than its recorded size (changed while reading?)");
    return data;
}

struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

bool refers_to_external_data(const std::string &onnx) {
    // Every ONNX external_data entry has the key "location" (protobuf strings are stored as raw
    // bytes), so a file without these bytes cannot refer to one. A file with them is refused
    // rather than parsed: OpenVINO would open absolute or working-directory-relative locations.
    return onnx.find("location") != std::string::npos;
}

bool is_valid_name(const std::string &name) {
    if (name.empty() || name.size() > 64 || name.find("..") != std::string::npos) return false;
    for (size_t i = 0; i < name.size(); i++)
        if (!name_char(name[i], i == 0)) return false;
    return true;
}

ArtifactDir::ArtifactDir(const std::string &path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) fail(PRT_E_NOT_FOUND, path + ": no such directory (" + std::strerror(errno) + ")");
}

ArtifactDir::~ArtifactDir() {
    if (fd_ >= 0) ::close(fd_);
}

bool ArtifactDir::has_file(const std::string &name) const {
    struct stat st;
    return is_valid_name(name) && ::fstatat(fd_, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

int ArtifactDir::open_file(const std::string &relative, const std::string &manifest) const {
    const size_t slash = relative.find('/');
    const std::string folder = slash == std::string::npos ? "" : relative.substr(0, slash);
    const std::string name = slash == std::string::npos ? relative : relative.substr(slash + 1);
    if ((slash != std::string::npos && !is_valid_name(folder)) || !is_valid_name(name))
        fail(PRT_E_INCOMPATIBLE, path_ + ": " + manifest + " names a file outside the directory: '" + printable(relative) + "'");
    int dir = fd_;
    Fd sub{-1};
    if (!folder.empty()) {
        sub.fd = ::openat(fd_, folder.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub.fd < 0) {
            if (errno == ENOENT)
                fail(PRT_E_NOT_FOUND, path_ + ": " + relative + " is missing (listed in " + manifest + ")");
            fail(PRT_E_INCOMPATIBLE, path_ + ": " + folder + " is not a directory inside the artifact (a link?)");
        }
        dir = sub.fd;
    }
    const int fd = ::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) fail(PRT_E_NOT_FOUND, path_ + ": " + relative + " is missing (listed in " + manifest + ")");
        if (errno == ELOOP) fail(PRT_E_INCOMPATIBLE, path_ + ": " + relative + " is a symbolic link; refused");
        fail(PRT_E_INCOMPATIBLE, path_ + ": cannot open " + relative + ": " + std::strerror(errno));
    }
    return fd;
}

struct stat ArtifactDir::regular_file(int fd, const std::string &relative) const {
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        fail(PRT_E_INCOMPATIBLE, path_ + ": " + relative + " is not a regular file");
    return st;
}

std::string ArtifactDir::read_manifest(const std::string &name) const {
    Fd fd{open_file(name, name)};
    const struct stat st = regular_file(fd.fd, name);
    if (static_cast<uint64_t>(st.st_size) > kMaxManifestBytes)
        fail(PRT_E_INCOMPATIBLE, path_ + ": " + name + " has " + std::to_string(st.st_size) +
                                     " bytes, too large for a manifest (limit " + std::to_string(kMaxManifestBytes) + ")");
    return read_all(fd.fd, static_cast<uint64_t>(st.st_size), path_ + "/" + name);
}

std::string ArtifactDir::read_verified(const std::string &relative, const FileSpec &spec,
                                       const std::string &manifest) const {
    Fd fd{open_file(relative, manifest)};
    const struct stat st = regular_file(fd.fd, relative);
    if (static_cast<uint64_t>(st.st_size) != spec.bytes)
        fail(PRT_E_INCOMPATIBLE, path_ + ": " + relative + " has " + std::to_string(st.st_size) + " bytes, " + manifest +
                                     " records " + std::to_string(spec.bytes) + " (modified after it was written?)");
    if (spec.bytes > kMaxFileBytes)
        fail(PRT_E_INCOMPATIBLE, path_ + ": " + relative + " has " + std::to_string(spec.bytes) + " bytes; the limit is " +
                                     std::to_string(kMaxFileBytes));
    // Holes cost no disk but would cost memory: a model's weights do not compress 8x, so a file
    // with fewer allocated blocks than that (sparse, or a hostile compressed filesystem) is refused.
    if (spec.bytes > (1u << 20) && static_cast<uint64_t>(st.st_blocks) * 512 * 8 < spec.bytes)
        fail(PRT_E_INCOMPATIBLE, path_ + ": " + relative + " is sparse (" + std::to_string(st.st_blocks * 512) +
                                     " bytes on disk for " + std::to_string(spec.bytes) + "); refused");
    const std::string mismatch = path_ + ": " + relative + " does not match its sha256 in " + manifest +
                                 " (modified after it was written?)";
    if (sha256_stream(fd.fd, spec.bytes, path_ + "/" + relative) != spec.sha256) fail(PRT_E_INCOMPATIBLE, mismatch);
    // hashed again in memory: what OpenVINO gets is exactly what was checked, even if the file changes now
    std::string data = read_all(fd.fd, spec.bytes, path_ + "/" + relative);
    if (sha256_hex(data) != spec.sha256) fail(PRT_E_INCOMPATIBLE, mismatch);
    return data;
}

}  // namespace prt
