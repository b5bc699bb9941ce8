// MACE's storage interface (mace/core/kv_storage.h, v0.12 to v1.1), written from the project's notes
// on MACE so the drop-in TU compiles here exactly as it does inside a MACE build: same classes, same
// members in the same order, same inline destructors.
#ifndef MACE_CORE_KV_STORAGE_H_
#define MACE_CORE_KV_STORAGE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mace/utils/rwlock.h"

namespace mace {

// A key-value store of byte vectors.
class KVStorage {
 public:
  // 0 on success, -1 on error.
  virtual int Load() = 0;
  // Removes every entry.
  virtual bool Clear() = 0;
  // Inserts or overwrites key.
  virtual bool Insert(const std::string &key,
                      const std::vector<unsigned char> &value) = 0;
  // The value of key, or nullptr.
  virtual const std::vector<unsigned char> *Find(const std::string &key) = 0;
  // 0 on success, -1 on error.
  virtual int Flush() = 0;
  virtual ~KVStorage() {}
};

// Creates the stores MACE keeps its caches in.
class KVStorageFactory {
 public:
  // A store named name.
  virtual std::shared_ptr<KVStorage> CreateStorage(const std::string &name) = 0;
  virtual ~KVStorageFactory() {}
};

// Creates FileStorage objects for files in one directory.
class FileStorageFactory : public KVStorageFactory {
 public:
  // path: the directory; the application must be able to read and write it.
  explicit FileStorageFactory(const std::string &path);
  ~FileStorageFactory();

  // A FileStorage for path + "/" + name.
  std::shared_ptr<KVStorage> CreateStorage(const std::string &name) override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A store kept in one file.
class FileStorage : public KVStorage {
 public:
  explicit FileStorage(const std::string &file_path);
  virtual ~FileStorage() {}

  int Load() override;
  bool Clear() override;
  bool Insert(const std::string &key,
              const std::vector<unsigned char> &value) override;
  const std::vector<unsigned char> *Find(const std::string &key) override;
  int Flush() override;

 private:
  bool loaded_;
  bool data_changed_;
  std::string file_path_;
  std::map<std::string, std::vector<unsigned char>> data_;
  utils::RWMutex data_mutex_;
};

// A store over a cache file's bytes in memory (a precompiled binary linked into the app).
class ReadOnlyByteStreamStorage : public KVStorage {
 public:
  ReadOnlyByteStreamStorage(const unsigned char *byte_stream,
                            size_t byte_stream_size);
  virtual ~ReadOnlyByteStreamStorage() {}

  int Load() override;
  bool Clear() override;
  bool Insert(const std::string &key,
              const std::vector<unsigned char> &value) override;
  const std::vector<unsigned char> *Find(const std::string &key) override;
  int Flush() override;

 private:
  std::map<std::string, std::vector<unsigned char>> data_;
};

}  // namespace mace

#endif  // MACE_CORE_KV_STORAGE_H_
