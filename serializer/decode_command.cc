#include <kj/exception.h>

#include <map>

#include "common/image_format.h"
#include "common/stage_stream.h"
#include "serializer/commands.h"
#include "serializer/endpoint.h"
#include "serializer/entry_decode.h"

namespace crpipe {

namespace {

constexpr size_t kRawPreview = 32;

struct OpenImage {
  std::string name;
  std::optional<ImageKind> kind;
  std::optional<ImageFramer> framer;  // where the image's chunks stand
};

void printRaw(FILE* out, std::string_view data) {
  fprintf(out, "    %s%s\n", hexBytes(data.substr(0, kRawPreview)).c_str(),
          data.size() > kRawPreview ? "..." : "");
}

void printEntry(FILE* out, const OpenImage* img, std::string_view payload) {
  if (img == nullptr || !img->kind) {
    fprintf(out, "    (image never opened) %s\n", hexBytes(payload.substr(0, kRawPreview)).c_str());
    return;
  }
  auto msg = decodeEntry(*img->kind, payload);
  if (!msg) {
    fprintf(out, "    %s: %s\n", img->name.c_str(), msg.error().str().c_str());
    return;
  }
  fprintf(out, "    %s: %s { %s }\n", img->name.c_str(), (*msg)->GetDescriptor()->name().c_str(),
          entryText(**msg, true).c_str());
}

// Each entry of a chunk as an ImageEntry would print, and each run of data as an ImageRaw.
void printChunk(FILE* out, OpenImage* img, proto::ImageChunk::Reader c) {
  if (img == nullptr || !img->framer) {
    fprintf(out, "    (image never opened)\n");
    return;
  }
  auto d = c.getBytes();
  std::string_view bytes(reinterpret_cast<const char*>(d.begin()), d.size());
  if (c.getDataAt().size() > 0) {
    auto st = img->framer->feedWithoutData(
        bytes, c.getDataAt(),
        [out, img](std::string_view payload) -> Status {
          printEntry(out, img, payload);
          return {};
        },
        [out](uint64_t offset, uint64_t length) -> Status {
          fprintf(out, "    (%lu bytes of data at offset %lu of the image file)\n",
                  static_cast<unsigned long>(length), static_cast<unsigned long>(offset));
          return {};
        });
    if (!st) {
      fprintf(out, "    %s: %s\n", img->name.c_str(), st.error().str().c_str());
    }
    return;
  }
  auto st = img->framer->feed(
      bytes,
      [out, img](std::string_view payload) -> Status {
        printEntry(out, img, payload);
        return {};
      },
      [out](std::string_view data) -> Status {
        printRaw(out, data);
        return {};
      });
  if (!st) {
    fprintf(out, "    %s: %s\n", img->name.c_str(), st.error().str().c_str());
  }
}

Status printMessage(FILE* out, proto::Message::Reader m, uint64_t offset,
                    std::map<uint32_t, OpenImage>& images, StageReader& reader) {
  fprintf(out, "@%lu %s\n", static_cast<unsigned long>(offset), describeMessage(m).c_str());
  if (m.isImageOpen()) {
    auto o = m.getImageOpen();
    OpenImage img{o.getName(), imageKindForFile(o.getName().cStr()), std::nullopt};
    if (img.kind) {
      img.framer.emplace(*img.kind);
    }
    images[o.getImage()] = std::move(img);
  } else if (m.isEntry()) {
    auto it = images.find(m.getEntry().getImage());
    auto p = m.getEntry().getPayload();
    std::string_view payload(reinterpret_cast<const char*>(p.begin()), p.size());
    if (it != images.end() && it->second.framer) {
      (void)it->second.framer->feedEntry(payload);
    }
    printEntry(out, it == images.end() ? nullptr : &it->second, payload);
  } else if (m.isChunk()) {
    auto it = images.find(m.getChunk().getImage());
    printChunk(out, it == images.end() ? nullptr : &it->second, m.getChunk());
  } else if (m.isRaw()) {
    auto it = images.find(m.getRaw().getImage());
    auto d = m.getRaw().getData();
    if (it != images.end() && it->second.framer) {
      (void)it->second.framer->feedRaw(d.size());
    }
    printRaw(out, std::string_view(reinterpret_cast<const char*>(d.begin()), d.size()));
  } else if (m.isPages()) {
    // The first bytes of the payload; the reader skips the rest.
    auto it = images.find(m.getPages().getImage());
    if (it != images.end() && it->second.framer) {
      (void)it->second.framer->feedRaw(m.getPages().getLength());
    }
    std::string head(std::min<uint64_t>(reader.payloadLeft(), kRawPreview), '\0');
    CRPIPE_TRY(reader.readPayload(head.data(), head.size()));
    fprintf(out, "    %s%s\n", hexBytes(head).c_str(),
            m.getPages().getLength() > kRawPreview ? "..." : "");
  }
  return {};
}

}  // namespace

Status runDecode(const DecodeOptions& opts, FILE* out) {
  auto in = openInput(opts.in);
  if (!in) {
    return fail(std::move(in).error());
  }
  StageReader reader(in->fd, in->name);
  std::map<uint32_t, OpenImage> images;
  uint64_t count = 0;
  for (;;) {
    auto msg = reader.next();
    if (!msg) {
      fflush(out);
      return fail(std::move(msg).error());
    }
    if (!*msg) {
      break;
    }
    ++count;
    try {
      auto printed = printMessage(out, **msg, reader.offset(), images, reader);
      if (!printed) {
        fflush(out);
        return fail(std::move(printed).error());
      }
    } catch (const kj::Exception& e) {
      fflush(out);
      return failMsg(in->name + " at offset " + std::to_string(reader.offset()) + ": " +
                     e.getDescription().cStr());
    }
  }
  fprintf(out, "# %lu messages, %lu bytes\n", static_cast<unsigned long>(count),
          static_cast<unsigned long>(reader.offset()));
  return {};
}

}  // namespace crpipe
