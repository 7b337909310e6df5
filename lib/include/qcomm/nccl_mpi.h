// Bootstrapping the NCCL transport over MPI (target qcomm::nccl, when MPI is found): rank 0 makes
// the unique id and broadcasts it; every process joins on CUDA device `device`.
#pragma once

#include <mpi.h>

#include <memory>

#include "qcomm/nccl_transport.h"

namespace qcomm::transport {

Result<std::unique_ptr<NcclTransport>> createNcclOverMpi(MPI_Comm comm, int device,
                                                         NcclOptions options = {});

}  // namespace qcomm::transport
