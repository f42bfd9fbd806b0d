# The crpipe stage protocol: every message that passes between crpipe's stages.
#
# A stage channel is a byte stream of Cap'n Proto messages in the standard stream framing
# (segment table, then segments). It is read front to back and never seeked, so it can be a
# pipe, a unix socket, an ssh channel or a TCP connection, and a reader can act on each
# message as it arrives. The state model is not here: image entries travel as the exact
# protobuf bytes that CRIU's image format stores (protos/*.proto); this schema only
# frames them and carries control.
@0xf8c549c20332626f;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("crpipe::proto");

struct Message {
  union {
    hello @0 :Hello;
    imageOpen @1 :ImageOpen;
    entry @2 :ImageEntry;
    raw @3 :ImageRaw;
    progress @4 :Progress;
    failure @5 :Failure;
    end @6 :End;
    committed @7 :Committed;
    verdict @8 :Verdict;
  }
}

# First message of every data stream and of every control channel: who speaks.
struct Hello {
  role @0 :Role;
  protocolVersion @1 :UInt32;   # PROTOCOL_VERSION below; a reader refuses others
  toolVersion @2 :Text;
  rootPid @3 :Int32;            # the dumped tree's root, when known
  enum Role {
    collector @0;
    serializer @1;              # replaying an image directory as a stream
    coordinator @2;
    restorer @3;
  }
}

const protocolVersion :UInt32 = 1;

# Collector or serializer -> reader: a new image file starts. Entries and raw data that
# follow name it by `image`, an index unique within the stream.
struct ImageOpen {
  image @0 :UInt32;
  name @1 :Text;                # file name inside the image directory, e.g. "files.img"
  headMagic @2 :UInt32;         # 0: none (inventory, raw images)
  magic @3 :UInt32;             # 0 with headMagic 0: a raw image such as pages-1.img
}

# One framed entry of an image: the protobuf bytes exactly as the image stores them
# after their 4-byte little-endian length.
struct ImageEntry {
  image @0 :UInt32;
  payload @1 :Data;
}

# Raw bytes appended to an image: the data that follows a pipe-data or sk-queue entry,
# or a batch of pages.
struct ImageRaw {
  image @0 :UInt32;
  data @1 :Data;
}

# Any stage -> coordinator (control channel): how far a long step has come.
struct Progress {
  step @0 :Text;                # "freeze", "fds", "sockets", "write"
  done @1 :UInt64;
  total @2 :UInt64;             # 0 when unknown
  detail @3 :Text;
}

# Any stage -> its reader or the coordinator: the stage gave up. The message names the
# resource (pid, fd, socket inode, file and offset) and, where there is one, the way out.
struct Failure {
  message @0 :Text;
  errnoValue @1 :Int32;         # 0 when no syscall failed
}

# Collector -> reader: the stream is complete. Counts let the reader detect truncation.
struct End {
  images @0 :UInt32;
  entries @1 :UInt64;
  rawBytes @2 :UInt64;
}

# Serializer -> coordinator: every image is written and synced under `directory`.
struct Committed {
  directory @0 :Text;
  images @1 :UInt32;
  bytes @2 :UInt64;
}

# Coordinator -> collector: what to do with the frozen tree once the dump is safe.
# A collector that loses its coordinator before a verdict releases the tree running.
struct Verdict {
  kill @0 :Bool;                # false: release the tree running (--leave-running)
}
