// The NCCL transport's store bootstrap: the unique id travels through a KeyValueStore.
#include "qcomm/nccl_store.h"

#include <cstring>

namespace qcomm::transport {

Result<ncclUniqueId> shareNcclUniqueId(KeyValueStore& store, int rank, const std::string& prefix,
                                       std::chrono::milliseconds timeout) {
  const std::string key = prefix + "/nccl-unique-id";
  // The value: 1 and the id's bytes, or 0 and why rank 0 has none.
  ncclUniqueId id{};
  if (rank == 0) {
    std::vector<char> value;
    const ncclResult_t made = ncclGetUniqueId(&id);
    if (made == ncclSuccess) {
      value.push_back(1);
      value.insert(value.end(), id.internal, id.internal + sizeof(id.internal));
    } else {
      const std::string why = ncclGetErrorString(made);
      value.push_back(0);
      value.insert(value.end(), why.begin(), why.end());
    }
    QCOMM_RETURN_IF_ERROR(store.set(key, value).withContext("rank 0: NCCL unique id: "));
    if (made != ncclSuccess) {
      return internalError("rank 0: ncclGetUniqueId failed: ", ncclGetErrorString(made));
    }
    return id;
  }
  Result<std::vector<char>> value = store.get(key, timeout);
  if (!value.isOk()) {
    return value.status().withContext(
        strCat("rank ", rank, ": waiting for rank 0's NCCL unique id under '", key, "': "));
  }
  const std::vector<char>& v = *value;
  if (!v.empty() && v[0] == 0) {
    return internalError("rank ", rank, ": rank 0 could not make an NCCL unique id: ",
                         std::string(v.begin() + 1, v.end()));
  }
  if (v.size() != 1 + sizeof(id.internal) || v[0] != 1) {
    return dataLoss("rank ", rank, ": '", key, "' holds ", v.size(), " bytes where ",
                    1 + sizeof(id.internal), " (a flag and an NCCL unique id) were expected");
  }
  std::memcpy(id.internal, v.data() + 1, sizeof(id.internal));
  return id;
}

Result<std::unique_ptr<NcclTransport>> createNcclOverStore(KeyValueStore& store, int rank,
                                                           int size, int device,
                                                           NcclOptions options,
                                                           const std::string& prefix) {
  if (size < 1 || rank < 0 || rank >= size) {
    return invalidArgument("NCCL rank ", rank, " of ", size, " is impossible");
  }
  QCOMM_ASSIGN_OR_RETURN(const ncclUniqueId id,
                         shareNcclUniqueId(store, rank, prefix, options.timeout));
  return NcclTransport::createWithUniqueId(id, rank, size, device, options);
}

}  // namespace qcomm::transport
