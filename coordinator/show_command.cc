#include "coordinator/show_command.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "common/unique_fd.h"
#include "serializer/entry_decode.h"
#include "serializer/json_writer.h"

namespace crpipe {

namespace {

std::string at(const ImageFile& f, uint64_t off) {
  return f.name() + " at offset " + std::to_string(off);
}

// Calls fn(entry message, raw data that follows it or "", offset) for each entry.
template <typename Fn>
Status forEachEntry(const ImageFile& f, Fn fn) {
  const auto& pieces = f.pieces();
  for (size_t i = 0; i < pieces.size(); ++i) {
    const ImagePiece& p = pieces[i];
    if (p.type != ImagePiece::Type::Entry) {
      continue;
    }
    auto msg = decodeEntry(f.kind(), p.data);
    if (!msg) {
      return fail(std::move(msg).error().context(at(f, p.offset)));
    }
    std::string_view extra;
    if (i + 1 < pieces.size() && pieces[i + 1].type == ImagePiece::Type::Raw) {
      extra = pieces[i + 1].data;
    }
    fn(**msg, extra, p.offset);
  }
  return {};
}

uint64_t rawSize(const ImageFile& f) {
  uint64_t n = 0;
  for (const auto& p : f.pieces()) {
    n += p.data.size();
  }
  return n;
}

void writeFile(JsonWriter& w, const ImageFile& f, Status& st) {
  w.beginObject();
  w.key("magic");
  w.string(magicName(f.kind()));
  if (f.kind().protoType.empty()) {
    w.key("size");
    w.number(std::to_string(rawSize(f)));
    w.endObject();
    return;
  }
  w.key("entries");
  w.beginArray();
  st = forEachEntry(f, [&w](const google::protobuf::Message& m, std::string_view extra,
                            uint64_t) {
    if (extra.empty()) {
      w.message(m);
    } else {
      w.message(m, "extra", hexBytes(extra));
    }
  });
  w.endArray();
  w.endObject();
}

Result<std::vector<std::string>> imageNames(int dirFd, const std::string& dir) {
  UniqueFd dup(::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = dup.valid() ? ::fdopendir(dup.get()) : nullptr;
  if (d == nullptr) {
    return failSys("read directory " + dir);
  }
  (void)dup.release();  // owned by the DIR stream
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (imageKindForFile(n)) {
      names.push_back(n);
    }
  }
  ::closedir(d);
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    bool ai = a == "inventory.img", bi = b == "inventory.img";
    return ai != bi ? ai : a < b;
  });
  if (names.empty()) {
    return failMsg(dir + ": no image files");
  }
  return names;
}

}  // namespace

Result<std::string> imageJson(const ImageFile& file) {
  JsonWriter w;
  Status st;
  writeFile(w, file, st);
  CRPIPE_TRY(st);
  return w.str() + "\n";
}

Result<std::string> imageText(const ImageFile& file) {
  std::string out = "# " + file.name() + ": " + magicName(file.kind()) + "\n";
  if (file.kind().protoType.empty()) {
    return out + "# " + std::to_string(rawSize(file)) + " bytes of raw data\n";
  }
  CRPIPE_TRY(forEachEntry(file, [&out](const google::protobuf::Message& m,
                                       std::string_view extra, uint64_t off) {
    out += "@" + std::to_string(off) + " " + m.GetDescriptor()->name() + "\n";
    std::string body = entryText(m, false);
    size_t pos = 0;
    while (pos < body.size()) {
      size_t nl = body.find('\n', pos);
      if (nl == std::string::npos) {
        nl = body.size();
      }
      out += "  " + body.substr(pos, nl - pos) + "\n";
      pos = nl + 1;
    }
    if (!extra.empty()) {
      out += "  extra: " + hexBytes(extra) + "\n";
    }
  }));
  return out;
}

Result<std::string> showImages(const std::string& path, bool text) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) {
    return failSys("show " + path);
  }
  if (!S_ISDIR(st.st_mode)) {
    std::string dir = ".", base = path;
    if (auto slash = path.rfind('/'); slash != std::string::npos) {
      dir = slash == 0 ? "/" : path.substr(0, slash);
      base = path.substr(slash + 1);
    }
    UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd.valid()) {
      return failSys("open directory " + dir);
    }
    auto f = ImageFile::load(dfd.get(), base);
    if (!f) {
      return fail(std::move(f).error());
    }
    return text ? imageText(*f) : imageJson(*f);
  }
  UniqueFd dfd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) {
    return failSys("open image directory " + path);
  }
  auto names = imageNames(dfd.get(), path);
  if (!names) {
    return fail(std::move(names).error());
  }
  std::vector<ImageFile> files;
  for (const auto& n : *names) {
    auto f = ImageFile::load(dfd.get(), n);
    if (!f) {
      return fail(std::move(f).error().context(path));
    }
    files.push_back(std::move(*f));
  }
  if (text) {
    std::string out;
    for (const auto& f : files) {
      auto t = imageText(f);
      if (!t) {
        return fail(std::move(t).error().context(path));
      }
      out += *t;
    }
    return out;
  }
  JsonWriter w;
  w.beginObject();
  for (const auto& f : files) {
    w.key(f.name());
    Status s;
    writeFile(w, f, s);
    if (!s) {
      return fail(std::move(s).error().context(path));
    }
  }
  w.endObject();
  return w.str() + "\n";
}

}  // namespace crpipe
