#include "process.h"

#include <fcntl.h>
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

// Reads everything from fd until EOF.
std::string drain(int fd) {
  std::string text;
  std::array<char, 4096> buffer;
  ssize_t n;
  while ((n = read(fd, buffer.data(), buffer.size())) > 0) text.append(buffer.data(), n);
  return text;
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
  if (captureOut) {
    outcome.out = drain(outPipe[0]);  // (commands here print little on stderr)
    close(outPipe[0]);
  }
  outcome.err = drain(errPipe[0]);
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
