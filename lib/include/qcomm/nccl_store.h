// Bootstrapping the NCCL transport through a rendezvous store (target qcomm::nccl), for jobs
// without MPI (torchrun, init_process_group): rank 0 makes the unique id and sets it under
// `<prefix>/nccl-unique-id`; every other rank waits for it there, then all join on CUDA device
// `device`. A rank 0 that cannot make an id says why in the same key, so no rank waits forever.
#pragma once

#include <nccl.h>

#include <chrono>
#include <memory>
#include <string>

#include "qcomm/key_value_store.h"
#include "qcomm/nccl_transport.h"

namespace qcomm::transport {

// Rank 0's unique id, through `store` (rank 0 makes it). Touches no GPU.
Result<ncclUniqueId> shareNcclUniqueId(KeyValueStore& store, int rank, const std::string& prefix,
                                       std::chrono::milliseconds timeout);

Result<std::unique_ptr<NcclTransport>> createNcclOverStore(KeyValueStore& store, int rank,
                                                           int size, int device,
                                                           NcclOptions options = {},
                                                           const std::string& prefix = "qcomm");

}  // namespace qcomm::transport
