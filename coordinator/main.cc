// crpipe: the command users type. It parses the command line, builds the log sink and
// runs one command; every command returns what to print and the exit status.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "coordinator/check_command.h"
#include "coordinator/cli.h"
#include "coordinator/dump_command.h"
#include "coordinator/progress_view.h"
#include "coordinator/restore_command.h"
#include "coordinator/show_command.h"
#include "coordinator/socket_graph.h"
#include "coordinator/stage_command.h"

namespace {

int print(const crpipe::Outcome& o) {
  for (const auto& m : o.messages) {
    fprintf(stderr, "%s\n", m.c_str());
  }
  return o.exitCode;
}

// -o LOG: one log file for every stage. Truncated once here; everyone appends.
FILE* openLog(const crpipe::LogOptions& opts, std::string* err) {
  if (opts.file.empty()) {
    return stderr;
  }
  FILE* f = fopen(opts.file.c_str(), "we");
  if (f == nullptr) {
    *err = "crpipe: open log " + opts.file + ": " + strerror(errno);
    return nullptr;
  }
  fclose(f);
  f = fopen(opts.file.c_str(), "ae");
  if (f == nullptr) {
    *err = "crpipe: open log " + opts.file + ": " + strerror(errno);
  }
  return f;
}

int runShow(const crpipe::ShowOptions& s) {
  if (s.sockets) {
    auto g = crpipe::loadSocketGraph(s.path);
    if (!g) {
      fprintf(stderr, "crpipe: %s\n", g.error().str().c_str());
      return 1;
    }
    fputs(crpipe::renderSocketGraph(*g).c_str(), stdout);
    return 0;
  }
  auto out = crpipe::showImages(s.path, s.text);
  if (!out) {
    fprintf(stderr, "crpipe: %s\n", out.error().str().c_str());
    return 1;
  }
  fwrite(out->data(), 1, out->size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A stage that goes away shows up as a write error on its channel, not as our death.
  signal(SIGPIPE, SIG_IGN);
  auto cmd = crpipe::parseCommandLine(argc, argv);
  if (!cmd) {
    fprintf(stderr, "crpipe: %s\n", cmd.error().str().c_str());
    return 2;
  }
  switch (cmd->kind) {
    case crpipe::Command::Kind::Help:
      fputs(cmd->helpText.c_str(), stdout);
      return 0;
    case crpipe::Command::Kind::Version:
      printf("crpipe %s\n", CRPIPE_VERSION);
      return 0;
    case crpipe::Command::Kind::Check: {
      auto checks = crpipe::checkKernelFeatures();
      fputs(crpipe::renderFeatureChecks(checks).c_str(), stdout);
      for (const auto& c : checks) {
        if (!c.ok && !c.optional) {
          return 1;
        }
      }
      return 0;
    }
    case crpipe::Command::Kind::Show:
      return runShow(cmd->show);
    case crpipe::Command::Kind::RunDump:
    case crpipe::Command::Kind::RunRestore:
    case crpipe::Command::Kind::Stage: {
      const crpipe::LogOptions& lo = cmd->kind == crpipe::Command::Kind::RunDump ? cmd->dump.log
                                     : cmd->kind == crpipe::Command::Kind::RunRestore
                                         ? cmd->restore.log
                                         : cmd->stage.log;
      std::string err;
      FILE* logFile = openLog(lo, &err);
      if (logFile == nullptr) {
        fprintf(stderr, "%s\n", err.c_str());
        return 1;
      }
      crpipe::Log log(logFile, lo.level(), "coordinator: ");
      int rc;
      if (cmd->kind == crpipe::Command::Kind::RunDump) {
        crpipe::ProgressView view(stderr);
        rc = print(crpipe::runDump(cmd->dump, view, log));
      } else if (cmd->kind == crpipe::Command::Kind::RunRestore) {
        crpipe::ProgressView view(stderr);
        std::string report;
        auto outcome = crpipe::runRestore(cmd->restore, view, log, report);
        fputs(report.c_str(), stdout);
        fflush(stdout);
        rc = print(outcome);
      } else {
        rc = print(crpipe::runStage(cmd->stage, log));
      }
      if (logFile != stderr) {
        fclose(logFile);
      }
      return rc;
    }
  }
  return 2;
}
