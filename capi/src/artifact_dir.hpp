// Reading files out of an untrusted artifact directory: confined, size-checked, hashed.
#pragma once

#include <cstdint>
#include <string>
#include <sys/stat.h>

namespace prt {

struct FileSpec {
    std::string sha256;  // 64 lowercase hex digits
    uint64_t bytes = 0;
};

constexpr uint64_t kMaxManifestBytes = 4u << 20;
// ONNX files cannot exceed 2 GiB (protobuf); OpenVINO blobs of these models are smaller still
constexpr uint64_t kMaxFileBytes = uint64_t(2) << 30;

// Strict names, as on the Python side: [A-Za-z0-9][A-Za-z0-9._-]{0,63}, never "..".
bool is_valid_name(const std::string &name);

// Could this ONNX file refer to external data (weights in other files)? Those would be read by
// OpenVINO outside the hashed bytes, from paths the file names: such files are refused.
bool refers_to_external_data(const std::string &onnx);

class ArtifactDir {
  public:
    // PRT_E_NOT_FOUND if `path` is not a directory.
    explicit ArtifactDir(const std::string &path);
    ~ArtifactDir();
    ArtifactDir(const ArtifactDir &) = delete;
    ArtifactDir &operator=(const ArtifactDir &) = delete;

    const std::string &path() const { return path_; }
    // A regular file (not a link) of this name directly in the directory.
    bool has_file(const std::string &name) const;
    // The manifest's bytes, at most kMaxManifestBytes.
    std::string read_manifest(const std::string &name) const;
    // `relative` ("name" or "dir/name", strict names, no links anywhere), checked against `spec`:
    // size first, then sha256 streamed from the file (before any buffer of its size exists), then
    // sha256 of exactly the bytes returned.
    std::string read_verified(const std::string &relative, const FileSpec &spec, const std::string &manifest) const;

  private:
    int open_file(const std::string &relative, const std::string &manifest) const;
    struct stat regular_file(int fd, const std::string &relative) const;
    std::string path_;
    int fd_ = -1;
};

}  // namespace prt
