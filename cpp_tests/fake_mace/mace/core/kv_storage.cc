// Stands in for MACE's stock kv_storage.cc: every member aborts, so a test that uses FileStorage
// from `core` and does not abort proves mace_storage_replace_kv_storage() swapped this file out.
#include "mace/core/kv_storage.h"

#include <stdlib.h>

namespace mace {

class FileStorageFactory::Impl {};

FileStorageFactory::FileStorageFactory(const std::string &) { abort(); }
FileStorageFactory::~FileStorageFactory() { abort(); }
std::shared_ptr<KVStorage> FileStorageFactory::CreateStorage(const std::string &) { abort(); }

FileStorage::FileStorage(const std::string &) { abort(); }
int FileStorage::Load() { abort(); }
bool FileStorage::Clear() { abort(); }
bool FileStorage::Insert(const std::string &, const std::vector<unsigned char> &) { abort(); }
const std::vector<unsigned char> *FileStorage::Find(const std::string &) { abort(); }
int FileStorage::Flush() { abort(); }

ReadOnlyByteStreamStorage::ReadOnlyByteStreamStorage(const unsigned char *, size_t) { abort(); }
int ReadOnlyByteStreamStorage::Load() { abort(); }
bool ReadOnlyByteStreamStorage::Clear() { abort(); }
bool ReadOnlyByteStreamStorage::Insert(const std::string &, const std::vector<unsigned char> &) {
  abort();
}
const std::vector<unsigned char> *ReadOnlyByteStreamStorage::Find(const std::string &) { abort(); }
int ReadOnlyByteStreamStorage::Flush() { abort(); }

}  // namespace mace
