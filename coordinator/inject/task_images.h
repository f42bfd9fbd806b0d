#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "coordinator/restore_images.h"
#include "protos/core.pb.h"
#include "protos/fs.pb.h"
#include "protos/mm.pb.h"
#include "protos/pagemap.pb.h"
#include "protos/pstree.pb.h"

// The process state images of one task (core-TID, mm, pagemap, pages, fs), parsed from what
// the coordinator read front to back, for the memory and resume phases.
namespace crpipe::inject {

// Runs of pages and where their contents lie: page i of entry k is in `pages` at the sum of
// the earlier entries' sizes (pages-N.img holds them back to back, in pagemap order).
struct PageRuns {
  std::vector<images::PagemapEntry> entries;
  std::string_view pages;  // into RestoreImages, which outlives the restore
  uint64_t totalPages = 0;
};

struct ThreadImage {
  pid_t tid = 0;
  images::CoreEntry core;
};

struct TaskImage {
  pid_t pid = 0;
  std::vector<ThreadImage> threads;  // the leader (tid == pid) first
  images::MmEntry mm;
  bool hasFs = false;
  images::FsEntry fs;
  PageRuns pages;
};

Result<TaskImage> loadTaskImage(const RestoreImages& images, const images::PstreeEntry& ps);

// pagemap-shmem-SHMID.img of every shared anonymous object the dump has, by SHMID.
Result<std::map<uint64_t, PageRuns>> loadShmemImages(const RestoreImages& images);

}  // namespace crpipe::inject
