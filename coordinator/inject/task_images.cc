#include "coordinator/inject/task_images.h"

namespace crpipe::inject {

namespace {

constexpr uint64_t kPage = 4096;

template <typename Msg>
Result<Msg> parseOne(const RestoreImages& images, const std::string& name) {
  const auto& entries = images.entries(name);
  if (entries.size() != 1) {
    return failMsg(name + ": expected one entry, found " + std::to_string(entries.size()) +
                   (entries.empty() ? " (the dump has no process state for this task: it was "
                                      "made by a crpipe without issue 4)"
                                    : ""));
  }
  Msg m;
  if (!m.ParseFromString(entries[0].payload)) {
    return failMsg(name + ": malformed entry");
  }
  return m;
}

// A pagemap image: the head (pages_id), then the runs; the contents from pages-N.img.
Result<PageRuns> loadPageRuns(const RestoreImages& images, const std::string& name) {
  PageRuns runs;
  const auto& entries = images.entries(name);
  if (entries.empty()) {
    return failMsg(name + ": missing");
  }
  images::PagemapHead head;
  if (!head.ParseFromString(entries[0].payload)) {
    return failMsg(name + ": malformed head");
  }
  for (size_t i = 1; i < entries.size(); ++i) {
    images::PagemapEntry e;
    if (!e.ParseFromString(entries[i].payload)) {
      return failMsg(name + ": entry " + std::to_string(i) + " is malformed");
    }
    uint64_t n = e.has_nr_pages() ? e.nr_pages() : e.compat_nr_pages();
    e.set_nr_pages(n);
    if (e.in_parent()) {
      return failMsg(name + ": entry " + std::to_string(i) +
                     " refers to a parent dump (incremental dumps are not supported)");
    }
    runs.totalPages += n;
    runs.entries.push_back(std::move(e));
  }
  const std::string pagesName = "pages-" + std::to_string(head.pages_id()) + ".img";
  runs.pages = images.rawData(pagesName);
  if (runs.pages.size() != runs.totalPages * kPage) {
    return failMsg(pagesName + ": holds " + std::to_string(runs.pages.size()) + " bytes, " +
                   name + " describes " + std::to_string(runs.totalPages * kPage));
  }
  return runs;
}

}  // namespace

Result<TaskImage> loadTaskImage(const RestoreImages& images, const images::PstreeEntry& ps) {
  TaskImage t;
  t.pid = static_cast<pid_t>(ps.pid());
  std::vector<pid_t> tids;
  tids.push_back(t.pid);
  for (uint32_t tid : ps.threads()) {
    if (static_cast<pid_t>(tid) != t.pid) {
      tids.push_back(static_cast<pid_t>(tid));
    }
  }
  for (pid_t tid : tids) {
    auto core = parseOne<images::CoreEntry>(images, "core-" + std::to_string(tid) + ".img");
    if (!core) {
      return fail(std::move(core).error());
    }
    if (core->mtype() != images::CoreEntry::X86_64 || !core->has_thread_info()) {
      return failMsg("core-" + std::to_string(tid) + ".img: not an x86_64 thread");
    }
    if (tid == t.pid && !core->has_tc()) {
      return failMsg("core-" + std::to_string(tid) + ".img: the leader has no task core");
    }
    t.threads.push_back({tid, std::move(*core)});
  }
  auto mm = parseOne<images::MmEntry>(images, "mm-" + std::to_string(t.pid) + ".img");
  if (!mm) {
    return fail(std::move(mm).error());
  }
  t.mm = std::move(*mm);
  const std::string fsName = "fs-" + std::to_string(t.pid) + ".img";
  if (images.has(fsName)) {
    auto fs = parseOne<images::FsEntry>(images, fsName);
    if (!fs) {
      return fail(std::move(fs).error());
    }
    t.fs = std::move(*fs);
    t.hasFs = true;
  }
  auto runs = loadPageRuns(images, "pagemap-" + std::to_string(t.pid) + ".img");
  if (!runs) {
    return fail(std::move(runs).error());
  }
  t.pages = std::move(*runs);
  return t;
}

Result<std::map<uint64_t, PageRuns>> loadShmemImages(const RestoreImages& images) {
  std::map<uint64_t, PageRuns> out;
  for (const auto& name : images.names()) {
    constexpr std::string_view kPrefix = "pagemap-shmem-";
    if (!name.starts_with(kPrefix)) {
      continue;
    }
    uint64_t shmid = std::stoull(name.substr(kPrefix.size()));
    auto runs = loadPageRuns(images, name);
    if (!runs) {
      return fail(std::move(runs).error());
    }
    out.emplace(shmid, std::move(*runs));
  }
  return out;
}

}  // namespace crpipe::inject
