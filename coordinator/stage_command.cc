#include "coordinator/stage_command.h"

#include "coordinator/session.h"

namespace crpipe {

namespace {

// Stages run alone need no policy: they talk to their files, not to crpipe. Ctrl-C
// reaches them directly (same process group), so crpipe only waits.
class PassiveEvents : public SessionEvents {
 public:
  void onMessage(Stage&, proto::Message::Reader) override {}
  void onExit(Stage&) override {}
  void onSignal(int) override {}
};

std::vector<std::string> stageArgs(const StageOptions& o, std::string* binary) {
  std::vector<std::string> a;
  switch (o.kind) {
    case StageOptions::Kind::Collect:
      *binary = "crpipe-collector";
      a = {"-t", std::to_string(o.collector.pid), "--out", o.out};
      for (auto& x : o.collector.passThrough()) {
        a.push_back(x);
      }
      break;
    case StageOptions::Kind::Serialize:
      *binary = "crpipe-serializer";
      a = {"write", "-D", o.dir, "--in", o.in};
      break;
    case StageOptions::Kind::SerializeReverse:
      *binary = "crpipe-serializer";
      a = {"read", "-D", o.dir, "--out", o.out};
      break;
    case StageOptions::Kind::Decode:
      *binary = "crpipe-serializer";
      return {"decode", "--in", o.in};
  }
  a.push_back("-v");
  a.push_back(std::to_string(o.log.level()));
  if (!o.log.file.empty()) {
    a.push_back("--log");
    a.push_back(o.log.file);
  }
  return a;
}

}  // namespace

Outcome runStage(const StageOptions& opts, Log& log) {
  std::string name;
  auto args = stageArgs(opts, &name);
  auto bin = findStageBinary(name);
  if (!bin) {
    return Outcome{1, {"crpipe: " + bin.error().str()}};
  }
  log.debug("running %s", bin->c_str());
  PassiveEvents events;
  Session session(events);
  auto st = session.start(name, *bin, args, {}, UniqueFd());
  if (!st) {
    return Outcome{1, {"crpipe: " + st.error().str()}};
  }
  session.run();
  const StageExit& e = (*st)->process->exit();
  if (e.signal != 0) {
    return Outcome{128 + e.signal, {"crpipe: " + name + " " + e.describe()}};
  }
  return Outcome{static_cast<int>(e.status), {}};
}

}  // namespace crpipe
