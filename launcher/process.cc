#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

extern char** environ;

namespace qcomm::launcher {
namespace {

struct Outcome {
  int exitCode = -1;
  std::string out, err;
};

// Reads both pipes until both close, whichever the child writes to, so that a child filling
// one pipe while the other is being read cannot deadlock. outFd may be -1.
void drainBoth(int outFd, int errFd, std::string* out, std::string* err) {
  std::array<char, 4096> buffer;
  std::array<pollfd, 2> fds = {pollfd{outFd, POLLIN, 0}, pollfd{errFd, POLLIN, 0}};
  std::array<std::string*, 2> sinks = {out, err};
  int open = (outFd >= 0 ? 1 : 0) + 1;
  while (open > 0) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buffer.data(), buffer.size());
      if (n > 0) {
        sinks[i]->append(buffer.data(), n);
      } else {
        fds[i].fd = -1;  // EOF or error: stop watching it
        --open;
      }
    }
  }
}

Result<Outcome> spawnAndWait(const Argv& argv, bool captureOut) {
  int outPipe[2] = {-1, -1}, errPipe[2];
  if ((captureOut && pipe(outPipe) != 0) || pipe(errPipe) != 0) {
    return ioError("pipe: ", std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (captureOut) posix_spawn_file_actions_adddup2(&actions, outPipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, errPipe[1], STDERR_FILENO);
  // Only the duplicates stay open in the child: a daemon it leaves behind (dockerd) must not
  // hold the pipes, or the wait for their end would never end.
  for (int fd : {outPipe[0], outPipe[1], errPipe[0], errPipe[1]}) {
    if (fd > STDERR_FILENO) posix_spawn_file_actions_addclose(&actions, fd);
  }
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (captureOut) close(outPipe[1]);
  close(errPipe[1]);
  if (rc != 0) {
    if (captureOut) close(outPipe[0]);
    close(errPipe[0]);
    return ioError("cannot run '", argv[0], "': ", std::strerror(rc));
  }
  Outcome outcome;
  drainBoth(captureOut ? outPipe[0] : -1, errPipe[0], &outcome.out, &outcome.err);
  if (captureOut) close(outPipe[0]);
  close(errPipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  outcome.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

}  // namespace

std::string joinArgv(const Argv& argv) {
  std::string text;
  for (const std::string& a : argv) {
    const bool quote = a.empty() || a.find_first_of(" \t'\"$") != std::string::npos;
    text += (text.empty() ? "" : " ") + (quote ? "'" + a + "'" : a);
  }
  return text;
}

Status runCommand(const Argv& argv) {
  QCOMM_ASSIGN_OR_RETURN(const Outcome outcome, spawnAndWait(argv, false));
  if (outcome.exitCode != 0) {
    return ioError("'", joinArgv(argv), "' exited with ", outcome.exitCode,
                   outcome.err.empty() ? "" : ": ", outcome.err);
  }
  return Status::ok();
}

Result<std::string> captureCommand(const Argv& argv) {
  QCOMM_ASSIGN_OR_RETURN(const Outcome outcome, spawnAndWait(argv, true));
  if (outcome.exitCode != 0) {
    return ioError("'", joinArgv(argv), "' exited with ", outcome.exitCode, ": ", outcome.err);
  }
  return outcome.out;
}

namespace {

// The one signal that interrupted a foreground wait. A signal handler can only reach state
// like this; it is written by the handler and read by runInForeground alone.
volatile sig_atomic_t interruptSignal = 0;

void noteInterrupt(int signal) { interruptSignal = signal; }

}  // namespace

Result<int> runInForeground(const Argv& argv, int* interruptedBy) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(stdout);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ);
  if (rc != 0) return ioError("cannot run '", argv[0], "': ", std::strerror(rc));
  // While the child runs, SIGINT/SIGTERM/SIGHUP are noted instead of ending this process, so
  // that the caller can clean up after the child; the first is passed on to the child (which,
  // from a terminal, gets a second SIGINT through the process group: harmless).
  interruptSignal = 0;
  struct sigaction note = {}, old[3];
  note.sa_handler = noteInterrupt;
  sigemptyset(&note.sa_mask);
  const int signals[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) sigaction(signals[i], &note, &old[i]);
  int status = 0;
  bool forwarded = false;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    if (!forwarded && interruptSignal != 0) {
      kill(pid, interruptSignal);
      forwarded = true;
    }
  }
  for (int i = 0; i < 3; ++i) sigaction(signals[i], &old[i], nullptr);
  if (interruptedBy != nullptr) *interruptedBy = interruptSignal;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Status execCommand(const Argv& argv) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(stdout);
  execvp(cargv[0], cargv.data());
  return ioError("cannot run '", argv[0], "': ", std::strerror(errno));
}

bool runningAsRoot() { return geteuid() == 0; }

}  // namespace qcomm::launcher
