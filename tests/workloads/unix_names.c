/* Unix socket names and listeners: a path listener with three connections it has not
 * accepted (one client sent data, one closed after sending), an abstract name with NULs
 * in it, an autobound dgram socket, a name relative to the cwd, a socket file renamed after
 * bind and one unlinked after bind, a socket file with mode 0604, and a dgram receiver
 * with datagrams from a bound and an unbound sender. After the dump it accepts the
 * pending connections (data still there, in order) and checks every name. */
#include "unix_ux.h"

#include <sys/wait.h>

static int bind_path(int type, const char* path) {
  int s = socket(AF_UNIX, type, 0);
  WL_MUST(s >= 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  unlink(path);
  WL_MUST(bind(s, (struct sockaddr*)&a, sizeof(a)) == 0);
  return s;
}

static int connect_path(int type, const char* path) {
  int s = socket(AF_UNIX, type, 0);
  WL_MUST(s >= 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  WL_MUST(connect(s, (struct sockaddr*)&a, sizeof(a)) == 0);
  return s;
}

static void print_name_json(const char* name, size_t len) {
  printf("\"");
  for (size_t i = 0; i < len; i++) printf("%02x", (unsigned char)name[i]);
  printf("\"");
}

int main(void) {
  wl_init();
  char dir[] = "/tmp/unix_names.XXXXXX";
  WL_MUST(mkdtemp(dir) != NULL);
  WL_MUST(chdir(dir) == 0);
  char path[100];

  /* Listener with pending connections. */
  snprintf(path, sizeof(path), "%s/listen.sock", dir);
  int lst = bind_path(SOCK_STREAM, path);
  WL_MUST(listen(lst, 17) == 0);
  int c1 = connect_path(SOCK_STREAM, path);
  int c2 = connect_path(SOCK_STREAM, path);
  ux_send(c2, "early-data", 10, NULL, 0, 0);
  int c3 = connect_path(SOCK_STREAM, path);
  ux_send(c3, "bye", 3, NULL, 0, 0);
  close(c3);

  /* Abstract name with embedded NULs. */
  int ab = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  struct sockaddr_un aa = {.sun_family = AF_UNIX};
  static const char abname[] = "\0crpipe\0ab\0x";
  memcpy(aa.sun_path, abname, sizeof(abname) - 1);
  WL_MUST(bind(ab, (struct sockaddr*)&aa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof(abname) - 1)) == 0);
  WL_MUST(listen(ab, 4) == 0);

  /* Autobound: bind with only the family. */
  int auto_sk = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un fam = {.sun_family = AF_UNIX};
  WL_MUST(bind(auto_sk, (struct sockaddr*)&fam, sizeof(sa_family_t)) == 0);

  /* Relative name, renamed file, unlinked file, file mode. */
  int rel = bind_path(SOCK_DGRAM, "rel.sock");
  snprintf(path, sizeof(path), "%s/before.sock", dir);
  int ren = bind_path(SOCK_DGRAM, path);
  char after[100];
  snprintf(after, sizeof(after), "%s/after.sock", dir);
  WL_MUST(rename(path, after) == 0);
  snprintf(path, sizeof(path), "%s/gone.sock", dir);
  int gone = bind_path(SOCK_STREAM, path);
  WL_MUST(listen(gone, 1) == 0);
  int gone_client = connect_path(SOCK_STREAM, path);
  WL_MUST(unlink(path) == 0);
  WL_MUST(chmod("rel.sock", 0604) == 0);

  /* Datagrams from a bound sender (rel) and an unbound one, queued on ren. */
  struct sockaddr_un to = {.sun_family = AF_UNIX};
  snprintf(to.sun_path, sizeof(to.sun_path), "%s", after);
  WL_MUST(sendto(rel, "from-rel", 8, 0, (struct sockaddr*)&to, sizeof(to)) == 8);
  int anon = socket(AF_UNIX, SOCK_DGRAM, 0);
  WL_MUST(sendto(anon, "from-anon", 9, 0, (struct sockaddr*)&to, sizeof(to)) == 9);

  struct sockaddr_un got;
  socklen_t gl = sizeof(got);
  WL_MUST(getsockname(auto_sk, (struct sockaddr*)&got, &gl) == 0);
  printf("READY {\"pid\": %d, \"dir\": \"%s\", \"listener\": {\"ino\": %lu, \"backlog\": 17,"
         " \"pending\": 3, \"clients\": [%lu, %lu], \"client_data\": [0, 10, 3]},"
         " \"abstract\": {\"ino\": %lu, \"name_hex\": ",
         getpid(), dir, ux_ino(lst), ux_ino(c1), ux_ino(c2), ux_ino(ab));
  print_name_json(abname, sizeof(abname) - 1);
  printf("}, \"autobound\": {\"ino\": %lu, \"name_hex\": ", ux_ino(auto_sk));
  print_name_json(got.sun_path, gl - offsetof(struct sockaddr_un, sun_path));
  printf("}, \"relative\": {\"ino\": %lu, \"name\": \"rel.sock\", \"mode\": %d},"
         " \"renamed\": {\"ino\": %lu, \"current\": \"%s\", \"records\": [8, 9]},"
         " \"unlinked\": {\"ino\": %lu, \"client\": %lu}}\n",
         ux_ino(rel), 0140604, ux_ino(ren), after, ux_ino(gone), ux_ino(gone_client));

  wl_wait_verify();

  struct ux_msg m;
  WL_CHECK(ux_recv(ren, &m, 0) == 0 && m.len == 8 && memcmp(m.data, "from-rel", 8) == 0,
           "datagram from the bound sender");
  WL_CHECK(m.fromlen > offsetof(struct sockaddr_un, sun_path) &&
               strcmp(m.from.sun_path, "rel.sock") == 0,
           "sender address of the first datagram");
  WL_CHECK(ux_recv(ren, &m, 0) == 0 && m.len == 9, "datagram from the unbound sender");
  ux_expect_empty(ren, "renamed receiver");

  int a1 = accept(lst, NULL, NULL);
  int a2 = accept(lst, NULL, NULL);
  int a3 = accept(lst, NULL, NULL);
  WL_CHECK(a1 >= 0 && a2 >= 0 && a3 >= 0, "three pending connections accepted");
  ux_expect_empty(a1, "first pending connection");
  ux_expect_stream(a2, "second pending connection", "early-data", 10, 0);
  ux_expect_stream(a3, "third (closed) pending connection", "bye", 3, 0);
  WL_CHECK(recv(a3, m.data, 1, MSG_DONTWAIT) == 0, "third connection at EOF");
  ux_send(c1, "x", 1, NULL, 0, 0);
  ux_expect_stream(a1, "first connection works", "x", 1, 0);

  struct stat st;
  WL_CHECK(stat("rel.sock", &st) == 0 && (st.st_mode & 07777) == 0604, "mode of rel.sock");
  WL_CHECK(access(after, F_OK) == 0, "renamed socket file still there");
  return wl_finish();
}
