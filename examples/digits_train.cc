// Data-parallel training with qcomm: a 64-32-10 MLP on the digits data set, each MPI rank on its
// shard, gradients averaged with Communicator::allreduceMean. Runs three times, uncompressed,
// QSGD 4-bit and QSGD 2-bit with error feedback, and prints loss and accuracy per epoch.
//
//   mpirun -np 4 build/bin/qcomm_digits_example --data build/examples/digits.bin
//
// Build your own loop the same way: create the transport and the Communicator once, then after
// each backward pass call allreduceMean on the gradients (one fused buffer here) and step.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>

#include "qcomm/communicator.h"
#include "qcomm/mpi_transport.h"

namespace {

struct Dataset {
  int n = 0, d = 0;
  std::vector<float> x;
  std::vector<int> y;
};

qcomm::Result<Dataset> load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return qcomm::ioError("cannot open '", path, "' (make it with examples/export_digits.py)");
  Dataset data;
  in.read(reinterpret_cast<char*>(&data.n), 4).read(reinterpret_cast<char*>(&data.d), 4);
  if (!in || data.n <= 0 || data.d <= 0 || data.n > 1000000 || data.d > 100000) {
    return qcomm::dataLoss("'", path, "': bad header");
  }
  data.x.resize(size_t(data.n) * data.d);
  data.y.resize(data.n);
  in.read(reinterpret_cast<char*>(data.x.data()), data.x.size() * 4);
  in.read(reinterpret_cast<char*>(data.y.data()), data.y.size() * 4);
  if (!in) return qcomm::dataLoss("'", path, "': truncated");
  return data;
}

// The MLP's parameters (and gradients) live in one flat buffer: W1 (h x d), b1 (h), W2 (c x h), b2.
struct Mlp {
  int d, h, c;
  size_t w1() const { return 0; }
  size_t b1() const { return size_t(h) * d; }
  size_t w2() const { return b1() + h; }
  size_t b2() const { return w2() + size_t(c) * h; }
  size_t size() const { return b2() + c; }

  // Returns the loss of sample x; adds its gradient (if grad) and writes the logits.
  double forwardBackward(const std::vector<float>& p, const float* x, int label,
                         std::vector<float>* grad, std::vector<float>& hidden,
                         std::vector<float>& logits) const {
    for (int j = 0; j < h; ++j) {
      float a = p[b1() + j];
      for (int k = 0; k < d; ++k) a += p[w1() + size_t(j) * d + k] * x[k];
      hidden[j] = std::max(a, 0.0f);
    }
    float top = -INFINITY;
    for (int o = 0; o < c; ++o) {
      float a = p[b2() + o];
      for (int j = 0; j < h; ++j) a += p[w2() + size_t(o) * h + j] * hidden[j];
      logits[o] = a;
      top = std::max(top, a);
    }
    double z = 0.0;
    for (int o = 0; o < c; ++o) z += std::exp(double(logits[o] - top));
    const double loss = std::log(z) - double(logits[label] - top);
    if (grad == nullptr) return loss;
    std::vector<float> dHidden(h, 0.0f);
    for (int o = 0; o < c; ++o) {
      const float dl = float(std::exp(double(logits[o] - top)) / z) - (o == label ? 1.0f : 0.0f);
      (*grad)[b2() + o] += dl;
      for (int j = 0; j < h; ++j) {
        (*grad)[w2() + size_t(o) * h + j] += dl * hidden[j];
        dHidden[j] += dl * p[w2() + size_t(o) * h + j];
      }
    }
    for (int j = 0; j < h; ++j) {
      if (hidden[j] <= 0.0f) continue;
      (*grad)[b1() + j] += dHidden[j];
      for (int k = 0; k < d; ++k) (*grad)[w1() + size_t(j) * d + k] += dHidden[j] * x[k];
    }
    return loss;
  }
};

struct Mode {
  std::string name;
  qcomm::CommunicatorOptions options;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  CLI::App app("qcomm data-parallel training example (digits, MLP)");
  std::string path = "build/examples/digits.bin";
  int epochs = 30, batch = 16, hidden = 32;
  float lr = 0.1f;
  bool check = false;
  app.add_option("--data", path, "digits.bin from examples/export_digits.py")
      ->capture_default_str();
  app.add_option("--epochs", epochs)->capture_default_str();
  app.add_option("--batch", batch, "samples per rank per step")->capture_default_str();
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--lr", lr)->capture_default_str();
  app.add_flag("--check", check,
               "exit 1 unless 4-bit is within 1 point and 2-bit+EF within 2 "
               "points of uncompressed accuracy");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = rank == 0 ? app.exit(e) : 2;
    MPI_Finalize();
    return code;
  }
  auto die = [&](const qcomm::Status& s) {
    std::fprintf(stderr, "rank %d: %s\n", rank, s.toString().c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  };
  auto data = load(path);
  if (!data.isOk()) return die(data.status());
  auto transport = qcomm::transport::MpiTransport::create(MPI_COMM_WORLD);
  if (!transport.isOk()) return die(transport.status());

  // A fixed shuffle; the last 297 images are the test set; rank r trains on every P-th image.
  std::vector<int> order(data->n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(2024));
  const int trainSize = data->n - 297;
  std::vector<int> shard;
  for (int i = rank; i < trainSize; i += ranks) shard.push_back(order[i]);

  std::vector<Mode> modes(3);
  modes[0].name = "uncompressed";
  modes[0].options.algorithm = qcomm::Algorithm::kUncompressed;
  modes[1].name = "qsgd 4-bit";
  modes[1].options.codec = "qsgd:bits=4,bucket=512,norm=max,layout=compact";
  modes[2].name = "qsgd 2-bit + EF";
  modes[2].options.codec = "qsgd:bits=2,bucket=512,norm=max,layout=compact";
  modes[2].options.errorFeedback = true;
  for (Mode& m : modes) m.options.minCompressNumel = 0;  // this model is small: compress it all

  const Mlp mlp{data->d, hidden, 10};
  std::vector<double> finalAccuracy;
  for (const Mode& mode : modes) {
    auto comm = qcomm::Communicator::create(**transport, mode.options);
    if (!comm.isOk()) return die(comm.status());
    std::vector<float> params(mlp.size()), grad(mlp.size()), h(hidden), logits(10);
    std::mt19937 init(7);  // the same initial parameters on every rank
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    for (size_t i = 0; i < mlp.b1(); ++i) params[i] = gauss(init) * std::sqrt(2.0f / mlp.d);
    for (size_t i = mlp.w2(); i < mlp.b2(); ++i) params[i] = gauss(init) * std::sqrt(2.0f / hidden);
    if (rank == 0)
      std::printf("== %s (%d ranks, %s)\n", mode.name.c_str(), ranks,
                  mode.options.describe().c_str());
    double accuracy = 0.0;
    std::mt19937 shuffle(100 + rank);
    std::vector<int> local = shard;
    const int steps = int(local.size()) / batch;
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      std::shuffle(local.begin(), local.end(), shuffle);
      double lossSum = 0.0;
      for (int s = 0; s < steps; ++s) {
        std::fill(grad.begin(), grad.end(), 0.0f);
        for (int b = 0; b < batch; ++b) {
          const int i = local[s * batch + b];
          lossSum += mlp.forwardBackward(params, &data->x[size_t(i) * mlp.d], data->y[i], &grad, h,
                                         logits);
        }
        for (float& g : grad) g /= float(batch);
        // The one line data parallelism needs: average the gradients over ranks.
        const qcomm::Status st = (*comm)->allreduceMean(grad, "mlp");
        if (!st.isOk()) return die(st);
        for (size_t i = 0; i < params.size(); ++i) params[i] -= lr * grad[i];
      }
      int correct = 0;
      for (int t = trainSize; t < data->n; ++t) {
        const int i = order[t];
        mlp.forwardBackward(params, &data->x[size_t(i) * mlp.d], data->y[i], nullptr, h, logits);
        correct +=
            int(std::max_element(logits.begin(), logits.end()) - logits.begin()) == data->y[i];
      }
      accuracy = 100.0 * correct / (data->n - trainSize);
      double loss = lossSum / (double(steps) * batch);
      MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      if (rank == 0) {
        std::printf("epoch %3d  train loss %.4f  test accuracy %.2f%%\n", epoch, loss / ranks,
                    accuracy);
      }
    }
    finalAccuracy.push_back(accuracy);
    if (rank == 0) {
      std::printf("   %s: %.2f%% after %d epochs, %.1f KB received per rank per step\n\n",
                  mode.name.c_str(), accuracy, epochs,
                  double((*comm)->stats().bytesReceived) / double((*comm)->stats().calls) / 1024);
    }
  }
  const double gap4 = finalAccuracy[0] - finalAccuracy[1],
               gap2 = finalAccuracy[0] - finalAccuracy[2];
  if (rank == 0) {
    std::printf(
        "summary: uncompressed %.2f%%, qsgd 4-bit %.2f%% (%+.2f), qsgd 2-bit + EF %.2f%% (%+.2f)\n",
        finalAccuracy[0], finalAccuracy[1], -gap4, finalAccuracy[2], -gap2);
  }
  MPI_Finalize();
  return check && (gap4 > 1.0 || gap2 > 2.0) ? 1 : 0;
}
