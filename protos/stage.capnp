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
    taskOrder @9 :TaskOrder;
    phase @10 :Phase;
    phaseDone @11 :PhaseDone;
    pages @12 :ImagePages;
    chunk @13 :ImageChunk;
    pageRefs @14 :ImagePageRefs;
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

# 2: ImagePages, whose bytes follow the message outside Cap'n Proto framing.
# 3: ImageChunk.dataAt; queued messages' data mapped by restorers (SkQueue.file/offset).
const protocolVersion :UInt32 = 3;

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

# Collector or serializer -> reader: a run of an image's entries, with the raw data that
# follows them, exactly as the image file stores them: each entry as its 4-byte
# little-endian length and its protobuf bytes, an sk-queue or pipe-data entry followed by
# its data. A writer appends `bytes` to the file as they are; a reader that wants pieces
# walks them (common/image_stream.h, forEachChunkPiece). One message for many entries
# instead of one ImageEntry each: per-message costs were most of a dump's user time.
# `entries` and `rawBytes` say what `bytes` holds, so a reader checks the framing inside
# and End's counts still add up.
struct ImageChunk {
  image @0 :UInt32;
  entries @1 :UInt32;
  rawBytes @2 :UInt64;
  bytes @3 :Data;
  # `crpipe-serializer read --data-refs`, for a reader that has the image directory (the
  # coordinator of `crpipe run restore -D`): the data that follows the entries in the file
  # (socket queues, pipe buffers) is left off `bytes`; each entry of `bytes` that announces
  # data has it at the next of these byte offsets of the image file, in entry order. Such
  # a chunk has rawBytes 0 and cannot be written as an image file.
  dataAt @4 :List(UInt64);
}

# Collector or serializer -> reader: `length` raw bytes appended to an image (a batch of
# pages for pages-N.img). The bytes follow this message on the stream as they are, outside
# Cap'n Proto framing, so a writer sends them straight from its buffer and a reader takes
# them straight into their destination (the mapped image file, restore memory), with no
# copy into or out of a message. The next message starts right after them. Readers refuse
# a length over 64 MiB, and a stream that ends inside the bytes, naming this message's
# offset. End.rawBytes counts these bytes like ImageRaw's.
struct ImagePages {
  image @0 :UInt32;
  length @1 :UInt64;
}

# Any stage -> coordinator (control channel): how far a long step has come.
# Pages of a frozen task named instead of sent: the image gains the bytes of these ranges
# of `pid`'s memory, in this order, which the receiver reads itself (process_vm_readv).
# Only on the channel `crpipe run dump -D` makes between a collector and a serializer on
# the same host (both started with --page-refs): the tree stays frozen until the
# serializer has committed. A stream file or a remote reader always gets ImagePages.
struct ImagePageRefs {
  image @0 :UInt32;
  pid @1 :Int32;
  ranges @2 :List(MemRange);
}

struct MemRange {
  addr @0 :UInt64;
  length @1 :UInt64;
}

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
  pid @2 :Int32;                # restorer: the task that failed (0 for other stages)
  phase @3 :RestorePhase;       # restorer: the phase it was in
  upstream @4 :Bool;            # the stage failed only because the one feeding it did (its
                                # stream carried a Failure or ended early): not the cause
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

# ---- Restore -------------------------------------------------------------------------
#
# The coordinator plans the restore from the images (or the collector's stream) and talks
# to one crpipe-restorer per restored task over that task's control channel. Ordering lives
# in the coordinator: it sends Phase{X} to every restorer and the next phase only once
# every restorer answered PhaseDone{X}. A restorer does nothing between two orders but
# block on its channel: no sleeps, no polling.

# The restore phases, in the order the coordinator drives them. The names are the stable
# interface between coordinator and restorers; phases that have no work yet (the unix
# socket ones, issue 5; memory, issue 4) are still named so that their modules slot in.
enum RestorePhase {
  forkTree @0;        # each restorer clone3()s its children with set_tid = original pid;
                      # session leaders call setsid() at birth, before forking
  groupLeaders @1;    # a task whose pgid is its own pid creates its group
  groupMembers @2;    # every other task joins its group (the leader exists by now)
  bindListen @3;      # issue 5: listeners bind and listen
  connect @4;         # issue 5: clients connect
  accept @5;          # issue 5: listeners accept and dup into place
  refillQueues @6;    # issue 5: queued messages are sent back
  openFiles @7;       # every open file description is created once, by its owner task
  shareFds @8;        # descriptions held by several tasks travel with SCM_RIGHTS; every
                      # fd is put at its number (dup3) and temporaries are closed
  memory @9;          # issue 4: memory, registers, signals, threads
  resume @10;         # issue 4: every task resumes at once
  pendingConnect @11; # driven after accept and before refillQueues (the ordinal is not the
                      # order: kRestorePhases is). Clients of connections a listener had not
                      # accepted connect, each from the task its embryo's SO_PEERCRED names,
                      # in rounds (Phase.round): a listener's accept queue is cut into runs
                      # of consecutive connections made by one task, run k connects in round
                      # k, so queue order holds across tasks. Always at least one round.
}

# Coordinator -> restorer, first message on its control channel (all are queued before
# the tree exists; a restorer reads its own once it is born): which task it is and
# everything it needs. Image entries travel as their protobuf bytes (protos/*.proto).
struct TaskOrder {
  pstree @0 :Data;              # this task's PstreeEntry
  setsid @1 :Bool;              # session leader: setsid() at birth
  pgid @2 :Int32;               # the process group to end up in (--shell-job mapped)
  children @3 :List(Int32);     # pids to clone3 in forkTree, in this order
  descendants @4 :List(Int32);  # every pid below this task (whose channels it passes on)
  channels @5 :List(ChannelFd); # root only: where the descendants' channels were put
  serviceFdBase @6 :Int32;      # the restorer's own fds live at and above this number,
                                # above every fd number of the restored tree
  token @7 :Text;               # names this restore's fd transport sockets
  fds @8 :List(Data);           # FdinfoEntry of every fd of this task, in fd order
  files @9 :List(Data);         # FileEntry of every description this task creates, then
                                # the entries those refer to (a FIFO's REG entry)
  pipeData @10 :List(PipeData); # buffered data of the pipes and FIFOs this task creates
  sends @11 :List(FdTransfer);  # descriptions created here that other tasks also hold
  receives @12 :List(FdTransfer); # descriptions this task gets from others
  unixSockets @13 :List(UnixSocketOrder); # issue 5: how each unix socket this task
                                # creates comes to be (entries in `files`, with the
                                # entries of the sockets they refer to)
  skQueues @14 :List(SkQueue);  # queued messages this task writes back, in queue order
  parkAfterShare @15 :Bool;     # development mode (--stop-before memory): when the
                                # channel ends after shareFds, close the service fds and
                                # wait (pause) instead of exiting
  scmFiles @16 :List(UInt32);   # issue 5: descriptions (files, pipes) passed with
                                # SCM_RIGHTS in queues this task writes back: opened here
                                # in refillQueues, before the messages that carry them
  inherited @17 :List(FdTransfer); # --inherit-fd: descriptions taken from the coordinator
                                # (pidfd_getfd): fileId, peer = the coordinator's fd number
  coordinatorPid @18 :Int32;
  netns @19 :List(NamespaceFd); # network namespaces of the unix sockets made outside
                                # crpipe's own (by inode): the coordinator's fd of each
  mntns @20 :List(NamespaceFd); # mount namespaces of the socket files bound outside
                                # crpipe's own (by inode): the coordinator's fd of each
  dataFiles @21 :List(Int32);   # the coordinator's fds of the files that hold queued
                                # messages' data (SkQueue.file indexes this list): an image
                                # file of the directory, or a memfd of what came on the
                                # stream. The restorer maps them read-only (pidfd_getfd),
                                # writes from the mapping, and unmaps them after refill.
  pendingConnects @22 :List(PendingConnect); # issue 5: the not-yet-accepted connections
                                # whose clients this task connects, with their rounds
}

# One connection a listener had not accepted, connected by this task in round `round` of
# the pendingConnect phase. `embryo` is the file id of the embryo's entry (in the task's
# unix entries, with its listener and client): its client (the socket `peer` names, made
# by this task, or a temporary one when the client had closed or is outside the tree)
# connects to the listener with the embryo's recorded SO_PEERCRED (its uid/gid; from a
# helper with its pid when that task exited), and this task writes its queue back right
# after, in the same round. A task's connections of one listener and one round go in
# accept order.
struct PendingConnect {
  embryo @0 :UInt32;
  round @1 :UInt32;
}

struct NamespaceFd {
  ino @0 :UInt64;
  fd @1 :Int32;                 # the coordinator's fd (pidfd_getfd)
}

# How a restorer makes one unix socket (planned by coordinator/unix_plan.cc).
enum UnixRole {
  plain @0;           # socket(), bind its name, listen if it listened
  pairFirst @1;       # socketpair() with `partner` (also created here); this end is [0]
  pairSecond @2;      # the other end of a pairFirst
  acceptViaTemp @3;   # accepted from a temporary listener bound at this socket's own name
  connectViaTemp @4;  # connects to `partner`'s name (a temporary listener of another task
                      # or of this one) and tells which end it is with a 4-byte tag
  halfClosed @5;      # connected, its peer gone: made with a temporary peer that writes
                      # the queue and is closed
  external @6;        # its peer is outside the tree: reconnected by name, or left dead
  inherited @7;       # --external unix[INO]: taken from --inherit-fd fd[N]:socket:[INO]
}

struct UnixSocketOrder {
  fileId @0 :UInt32;
  role @1 :UnixRole;
  partner @2 :UInt32;           # pair and via-temp roles: the other end's file id
  connectTo @3 :Data;           # external: the name to connect to (empty: a dead connection)
  inFlight @4 :Bool;            # held by no task, only passed in a queued message: closed
                                # here once its messages are written
  keepPath @5 :Bool;            # a bound-then-unlinked listener whose pending connections
                                # other tasks connect: it stays at its path (not moved to
                                # one of its own) until the end of refillQueues
}

# One queued message to write back: an SkPacketEntry of sk-queues.img, and where its
# bytes are: `length` bytes at `offset` of TaskOrder.dataFiles[file].
struct SkQueue {
  entry @0 :Data;
  data @1 :Data;                # unused since protocol 3 (the bytes were inline)
  file @2 :UInt32;
  offset @3 :UInt64;
  length @4 :UInt64;
}

struct ChannelFd {
  pid @0 :Int32;
  fd @1 :Int32;
}

struct PipeData {
  fifo @0 :Bool;                # from fifo-data.img rather than pipes-data.img
  entry @1 :Data;               # PipeDataEntry
  data @2 :Data;                # its `bytes` raw bytes
}

# One description handed from the task that created it to another (shareFds).
struct FdTransfer {
  fileId @0 :UInt32;
  peer @1 :Int32;               # sends: the receiving pid; receives: the sending pid
}

# Coordinator -> every restorer: enter this phase.
struct Phase {
  phase @0 :RestorePhase;
  round @1 :UInt32;             # pendingConnect: which round, 0 .. rounds-1 (else 0)
  rounds @2 :UInt32;            # pendingConnect: how many (else 1)
}

# Restorer -> coordinator: this task finished the phase and waits for the next order.
struct PhaseDone {
  pid @0 :Int32;
  phase @1 :RestorePhase;
  serviceFds @2 :List(Int32);   # the restorer's own fds still open (its channel, its log),
                                # which issue 4 closes before the task resumes
  round @3 :UInt32;             # the round of Phase it answers
}
