#include <unistd.h>

#include <cstring>
#include <map>
#include <numeric>

#include "qcomm/transport.h"

namespace qcomm::transport {

std::vector<size_t> displacements(std::span<const size_t> counts) {
  std::vector<size_t> offsets(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) offsets[i] = offsets[i - 1] + counts[i - 1];
  return offsets;
}

size_t total(std::span<const size_t> counts) {
  return std::accumulate(counts.begin(), counts.end(), size_t{0});
}

std::vector<int> numberHosts(std::span<const std::string> hostNames) {
  std::map<std::string, int> numbers;
  std::vector<int> hosts;
  for (const std::string& name : hostNames) {
    hosts.push_back(numbers.emplace(name, static_cast<int>(numbers.size())).first->second);
  }
  return hosts;
}

std::string describeRanks(std::span<const int> ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) text += (i ? ", " : "") + std::to_string(ranks[i]);
  return text;
}

std::string thisHostKey() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) std::strcpy(name, "localhost");
  // Emulated hosts (network namespaces on one machine) share the host name but not the network
  // namespace.
  char ns[128] = {};
  const ssize_t n = readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);
  return n > 0 ? std::string(name) + "/" + std::string(ns, n) : std::string(name);
}

Result<std::vector<int>> Transport::hostOfRanks() {
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> names, allgatherStrings(thisHostKey()));
  return numberHosts(names);
}

Result<std::unique_ptr<Transport>> Transport::split(int /*color*/, int /*key*/) {
  return unimplemented("the ", name(), " transport cannot split into sub-groups (rank ", rank(),
                       ")");
}

Status Transport::allgatherv(std::span<const uint8_t> send, std::span<uint8_t> recv,
                             std::span<const size_t> recvCounts) {
  QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<Request> request, iallgatherv(send, recv, recvCounts));
  return request->wait();
}

Status Transport::alltoallv(std::span<const uint8_t> send, std::span<const size_t> sendCounts,
                            std::span<uint8_t> recv, std::span<const size_t> recvCounts) {
  QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<Request> request,
                         ialltoallv(send, sendCounts, recv, recvCounts));
  return request->wait();
}

Status Transport::allreduceSum(std::span<float> data) {
  QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<Request> request, iallreduceSum(data));
  return request->wait();
}

Result<std::vector<uint64_t>> Transport::allgatherU64(uint64_t value) {
  std::vector<uint64_t> all(size());
  const std::vector<size_t> counts(size(), sizeof(uint64_t));
  QCOMM_RETURN_IF_ERROR(allgatherv(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&value), sizeof(value)),
      std::span<uint8_t>(reinterpret_cast<uint8_t*>(all.data()), all.size() * sizeof(uint64_t)),
      counts));
  return all;
}

Result<std::vector<std::string>> Transport::allgatherStrings(const std::string& value) {
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> lengths, allgatherU64(value.size()));
  const std::vector<size_t> counts(lengths.begin(), lengths.end());
  std::vector<uint8_t> bytes(total(counts));
  QCOMM_RETURN_IF_ERROR(allgatherv(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(value.data()), value.size()), bytes,
      counts));
  std::vector<std::string> all;
  const std::vector<size_t> offsets = displacements(counts);
  for (size_t r = 0; r < counts.size(); ++r) {
    all.emplace_back(reinterpret_cast<const char*>(bytes.data()) + offsets[r], counts[r]);
  }
  return all;
}

}  // namespace qcomm::transport
