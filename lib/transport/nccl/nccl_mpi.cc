// The NCCL transport's MPI bootstrap: the unique id travels by MPI_Bcast.
#include "qcomm/nccl_mpi.h"

namespace qcomm::transport {

Result<std::unique_ptr<NcclTransport>> createNcclOverMpi(MPI_Comm comm, int device,
                                                         NcclOptions options) {
  int rank = 0, size = 0;
  if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS) {
    return internalError("createNcclOverMpi: MPI_Comm_rank/size failed");
  }
  ncclUniqueId id{};
  ncclResult_t made = ncclSuccess;
  if (rank == 0) made = ncclGetUniqueId(&id);
  // Every rank joins both broadcasts (rank 0 says whether it has an id), so none waits forever.
  int ok = made == ncclSuccess ? 1 : 0;
  if (MPI_Bcast(&ok, 1, MPI_INT, 0, comm) != MPI_SUCCESS ||
      MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm) != MPI_SUCCESS) {
    return internalError("rank ", rank, ": MPI_Bcast of the NCCL unique id failed");
  }
  if (ok == 0) {
    return internalError("rank ", rank, ": rank 0 could not make an NCCL unique id: ",
                         ncclGetErrorString(made));
  }
  return NcclTransport::createWithUniqueId(id, rank, size, device, options);
}

}  // namespace qcomm::transport
