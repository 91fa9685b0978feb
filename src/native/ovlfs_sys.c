/*
 * ovlfs_sys.c — the few Linux syscalls that Node's fs module lacks.
 *
 * Why this exists: an overlay filesystem needs xattrs (opaque markers,
 * metacopy, copy-up of user/trusted/security attributes), mknod for
 * whiteouts (char device 0/0) and fifos, renameat2 (NOREPLACE / EXCHANGE /
 * WHITEOUT), utimensat with exact nanoseconds and UTIME_OMIT, a sparse- and
 * reflink-aware file copy for copy-up, fsync by path and statvfs.
 * Node offers none of these (or only with lossy float timestamps).
 *
 * Design: every call runs on the libuv thread pool through one generic
 * napi_async_work scaffold (struct req: op code, arguments, result, errno)
 * and returns a Promise, so the FUSE daemon's JS thread does not block on
 * the syscall. Each call also has a `...Sync` twin that runs the same code
 * on the calling thread and returns the value or throws: for metadata calls
 * on a layer that answers in microseconds, where the pool's two thread hops
 * cost more than the syscall (src/engine/layer-io.ts decides which). On failure the Promise rejects with an Error carrying the positive
 * `errno` and the `syscall` name; src/native/sys.ts maps the number to its
 * name (ENOENT, ...) and adds the paths. Paths and xattr names may be strings
 * (UTF-8) or Buffers (raw bytes preserved).
 */
#define _GNU_SOURCE
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <stdint.h>
#include <unistd.h>
#include <linux/fs.h> /* FICLONE */

enum op {
  OP_LGETXATTR, OP_LSETXATTR, OP_LLISTXATTR, OP_LREMOVEXATTR, OP_MKNOD,
  OP_RENAMEAT2, OP_UTIMENSAT, OP_FUTIMENS, OP_COPYDATA, OP_FSYNCPATH,
  OP_STATFS, OP_READDIR, OP_OVLFH, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
  "lgetxattr", "lsetxattr", "llistxattr", "lremovexattr", "mknod",
  "renameat2", "utimensat", "futimens", "copyData", "fsyncPath", "statfs",
  "readdirIno", "overlayFh"
};

/* One in-flight request. Everything the worker thread touches is owned here. */
typedef struct {
  enum op op;
  napi_async_work work;
  napi_deferred deferred;
  char *path1, *path2;      /* NUL-terminated copies (path, new path / dst) */
  char *name;               /* xattr name */
  char *buf;                /* xattr value in (set) or out (get / list) */
  size_t buflen;
  int64_t n1, n2;           /* flags / mode / dev / fd, by op */
  struct timespec ts[2];
  int64_t result;           /* copyData: bytes copied */
  struct statvfs sv;
  int err;                  /* 0 or a positive errno */
  const char *syscall;      /* syscall that failed */
} req_t;

#define CHECK(call)                                                       \
  do {                                                                    \
    if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); \
      goto fail; }                                                        \
  } while (0)

/* ---------- worker-thread side ---------- */

static int seterr(req_t *r, const char *sc) {
  r->err = errno;
  r->syscall = sc;
  return -1;
}

/* lgetxattr/llistxattr share this: probe the size, read, retry if it grew. */
static void read_sized(req_t *r, int list) {
  for (int tries = 0; tries < 16; tries++) {
    ssize_t n = list ? llistxattr(r->path1, NULL, 0)
                     : lgetxattr(r->path1, r->name, NULL, 0);
    if (n < 0) { seterr(r, list ? "llistxattr" : "lgetxattr"); return; }
    if (n == 0) { r->buflen = 0; return; } /* empty: nothing to read (most objects have no xattrs) */
    free(r->buf);
    r->buf = malloc((size_t)n + 1);
    if (r->buf == NULL) { errno = ENOMEM; seterr(r, "malloc"); return; }
    n = list ? llistxattr(r->path1, r->buf, (size_t)n)
             : lgetxattr(r->path1, r->name, r->buf, (size_t)n);
    if (n >= 0) { r->buflen = (size_t)n; return; }
    if (errno != ERANGE) { seterr(r, list ? "llistxattr" : "lgetxattr"); return; }
  }
  errno = ERANGE;
  seterr(r, list ? "llistxattr" : "lgetxattr");
}

/* copyData's flags (its optional 4th argument). COPY_WRITEBACK: the copy is
 * to be fsynced next, so start writing each chunk back to the disk as soon
 * as it is copied (sync_file_range SYNC_FILE_RANGE_WRITE, which does not
 * wait) instead of leaving all of it to the fsync: the disk writes while the
 * copy goes on, and the fsync waits only for the last chunk. */
#define COPY_WRITEBACK 1
#define WRITEBACK_CHUNK ((off_t)8 << 20)

/* Copy [off, end) from in to out at the same offsets. *use_rw steps down
 * for good when a way is refused: 0 copy_file_range (same file system), 1
 * sendfile (in the kernel across file systems, as the kernel's overlayfs
 * splices: no copy through this process), 2 pread/pwrite. */
static int copy_range(req_t *r, int in, int out, off_t off, off_t end,
                      int *use_rw, char **rwbuf) {
  enum { RWSIZE = 1 << 20 };
  const off_t most = (r->n2 & COPY_WRITEBACK) ? WRITEBACK_CHUNK : (off_t)1 << 30;
  while (off < end) {
    size_t want = (size_t)(end - off > most ? most : end - off);
    ssize_t n;
    if (*use_rw == 0) {
      loff_t ioff = off, ooff = off;
      n = copy_file_range(in, &ioff, out, &ooff, want, 0);
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                    errno == EOPNOTSUPP)) {
        *use_rw = 1;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return seterr(r, "copy_file_range");
    } else if (*use_rw == 1) {
      /* sendfile writes at out's file position: keep it at off. */
      off_t ioff = off;
      if (lseek(out, off, SEEK_SET) < 0) return seterr(r, "lseek");
      n = sendfile(out, in, &ioff, want);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        *use_rw = 2;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return seterr(r, "sendfile");
    } else {
      if (*rwbuf == NULL && (*rwbuf = malloc(RWSIZE)) == NULL) {
        errno = ENOMEM;
        return seterr(r, "malloc");
      }
      if (want > RWSIZE) want = RWSIZE;
      n = pread(in, *rwbuf, want, off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return seterr(r, "read");
      for (ssize_t done = 0; done < n;) {
        ssize_t w = pwrite(out, *rwbuf + done, (size_t)(n - done), off + done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return seterr(r, "write");
        done += w;
      }
    }
    if (n == 0) break; /* source shrank under us: stop at its EOF */
    /* Only a hint: an error here (EIO included) is the fsync's to report. */
    if (r->n2 & COPY_WRITEBACK) (void)sync_file_range(out, off, n, SYNC_FILE_RANGE_WRITE);
    off += n;
    r->result += n;
  }
  return 0;
}

static void copy_data(req_t *r) {
  int in = -1, out = -1, use_rw = 0;
  char *rwbuf = NULL;
  struct stat st;

  if ((in = open(r->path1, O_RDONLY | O_CLOEXEC)) < 0) { seterr(r, "open"); goto done; }
  if (fstat(in, &st) < 0) { seterr(r, "fstat"); goto done; }
  if (!S_ISREG(st.st_mode)) {
    errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    seterr(r, "open");
    goto done;
  }
  out = open(r->path2, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, (mode_t)r->n1);
  if (out < 0) { seterr(r, "open"); goto done; }
  /* open() applied the umask; make the mode exactly what was asked for. */
  if (fchmod(out, (mode_t)(r->n1 & 07777)) < 0) { seterr(r, "fchmod"); goto done; }

  /* (1) reflink: shares the extents, holes included. Any failure means "not
   * supported here" (EOPNOTSUPP, EXDEV, EINVAL, ENOTTY, ...): fall back. */
  if (ioctl(out, FICLONE, in) == 0) { r->result = st.st_size; goto done; }

  /* (2) walk the data extents; holes are skipped and stay holes. */
  for (off_t off = 0; off < st.st_size;) {
    off_t data = lseek(in, off, SEEK_DATA), hole;
    if (data < 0 && errno == ENXIO) break; /* only a hole remains */
    if (data < 0 && (errno == EINVAL || errno == EOPNOTSUPP)) {
      data = off; /* no SEEK_DATA support: copy everything */
      hole = st.st_size;
    } else if (data < 0) {
      seterr(r, "lseek");
      goto done;
    } else if ((hole = lseek(in, data, SEEK_HOLE)) < 0) {
      seterr(r, "lseek");
      goto done;
    }
    if (data >= st.st_size) break;
    if (hole > st.st_size) hole = st.st_size;
    if (hole <= data) hole = data + 1; /* raced with a hole punch: still progress */
    if (copy_range(r, in, out, data, hole, &use_rw, &rwbuf) < 0) goto done;
    off = hole;
  }
  /* a trailing hole is only a size: extend without writing */
  if (ftruncate(out, st.st_size) < 0) { seterr(r, "ftruncate"); goto done; }

done:
  free(rwbuf);
  if (in >= 0) close(in);
  if (out >= 0 && close(out) < 0 && r->err == 0) seterr(r, "close");
  if (out >= 0 && r->err != 0) unlink(r->path2);
}

/* readdirIno: every entry but . and .. as records of
 * [u64 d_ino (LE)][u8 d_type][u16 name length (LE)][name bytes], so a listing
 * with inode numbers costs one getdents loop instead of one lstat per entry. */
static void read_dir(req_t *r) {
  DIR *d = opendir(r->path1);
  if (d == NULL) { seterr(r, "opendir"); return; }
  size_t cap = 64 * 1024, len = 0;
  char *out = malloc(cap);
  if (out == NULL) { closedir(d); errno = ENOMEM; seterr(r, "malloc"); return; }
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (e == NULL) {
      if (errno != 0) { seterr(r, "readdir"); free(out); closedir(d); return; }
      break;
    }
    if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0)))
      continue;
    size_t n = strlen(e->d_name);
    if (len + 11 + n > cap) {
      char *bigger = realloc(out, cap * 2 + n);
      if (bigger == NULL) { free(out); closedir(d); errno = ENOMEM; seterr(r, "realloc"); return; }
      out = bigger;
      cap = cap * 2 + n;
    }
    uint64_t ino = (uint64_t)e->d_ino;
    for (int i = 0; i < 8; i++) out[len++] = (char)((ino >> (8 * i)) & 0xff);
    out[len++] = (char)e->d_type;
    out[len++] = (char)(n & 0xff);
    out[len++] = (char)((n >> 8) & 0xff);
    memcpy(out + len, e->d_name, n);
    len += n;
  }
  closedir(d);
  free(r->buf);
  r->buf = out;
  r->buflen = len;
}

static void overlay_fh(req_t *r);

static void execute(napi_env env, void *data) {
  (void)env;
  req_t *r = data;
  int fd;
  switch (r->op) {
  case OP_LGETXATTR: read_sized(r, 0); break;
  case OP_READDIR: read_dir(r); break;
  case OP_LLISTXATTR: read_sized(r, 1); break;
  case OP_LSETXATTR:
    if (lsetxattr(r->path1, r->name, r->buf, r->buflen, (int)r->n1) < 0)
      seterr(r, "lsetxattr");
    break;
  case OP_LREMOVEXATTR:
    if (lremovexattr(r->path1, r->name) < 0) seterr(r, "lremovexattr");
    break;
  case OP_MKNOD:
    if (mknod(r->path1, (mode_t)r->n1, (dev_t)r->n2) < 0) seterr(r, "mknod");
    break;
  case OP_RENAMEAT2:
    if (syscall(SYS_renameat2, AT_FDCWD, r->path1, AT_FDCWD, r->path2,
                (unsigned int)r->n1) < 0)
      seterr(r, "renameat2");
    break;
  case OP_UTIMENSAT:
    if (utimensat(AT_FDCWD, r->path1, r->ts, r->n1 ? AT_SYMLINK_NOFOLLOW : 0) < 0)
      seterr(r, "utimensat");
    break;
  case OP_FUTIMENS:
    if (futimens((int)r->n1, r->ts) < 0) seterr(r, "futimens");
    break;
  case OP_COPYDATA: copy_data(r); break;
  case OP_FSYNCPATH:
    if ((fd = open(r->path1, O_RDONLY | O_CLOEXEC)) < 0) { seterr(r, "open"); break; }
    if (fsync(fd) < 0) seterr(r, "fsync");
    close(fd);
    break;
  case OP_STATFS:
    if (statvfs(r->path1, &r->sv) < 0) seterr(r, "statvfs");
    break;
  case OP_OVLFH: overlay_fh(r); break;
  default: errno = ENOSYS; seterr(r, "dispatch"); break;
  }
}

/* The kernel overlayfs's file handle of a real object (struct ovl_fb in
 * fs/overlayfs/overlayfs.h): version 0, magic 0xfb, total length, flags (0:
 * little-endian, a lower object), the exportfs fid type, the filesystem's
 * UUID (FS_IOC_GETFSUUID, as sb->s_uuid), then the fid as name_to_handle_at
 * gives it (the same exportfs_encode_fh). Used as the origin xattr value and,
 * in hex, as the index entry's name. The final symlink is not followed. */
#ifndef FS_IOC_GETFSUUID
struct ovlfs_fsuuid2 { uint8_t len; uint8_t uuid[16]; };
#define FS_IOC_GETFSUUID _IOR(0x15, 0, struct ovlfs_fsuuid2)
#define OVLFS_FSUUID struct ovlfs_fsuuid2
#else
#define OVLFS_FSUUID struct fsuuid2
#endif
static void overlay_fh(req_t *r) {
  enum { MAX_FID = 128, HDR = 21 };
  struct { struct file_handle fh; unsigned char f[MAX_FID]; } h;
  int mount_id, fd;
  OVLFS_FSUUID u;
  h.fh.handle_bytes = MAX_FID;
  if (name_to_handle_at(AT_FDCWD, r->path1, &h.fh, &mount_id, 0) < 0) { seterr(r, "name_to_handle_at"); return; }
  /* ioctl needs a real descriptor; the directory holding the object is on the same filesystem. */
  char *dir = strdup(r->path1);
  if (dir == NULL) { errno = ENOMEM; seterr(r, "strdup"); return; }
  char *slash = strrchr(dir, '/');
  if (slash == NULL) strcpy(dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0) { seterr(r, "open"); return; }
  memset(&u, 0, sizeof u);
  if (ioctl(fd, FS_IOC_GETFSUUID, &u) < 0) { seterr(r, "ioctl(FS_IOC_GETFSUUID)"); close(fd); return; }
  close(fd);
  if (h.fh.handle_bytes > MAX_FID || HDR + h.fh.handle_bytes > 255 || u.len > 16) { errno = EOVERFLOW; seterr(r, "overlayFh"); return; }
  r->buflen = HDR + h.fh.handle_bytes;
  if ((r->buf = calloc(1, r->buflen)) == NULL) { errno = ENOMEM; seterr(r, "malloc"); return; }
  unsigned char *b = (unsigned char *)r->buf;
  b[0] = 0; b[1] = 0xfb; b[2] = (unsigned char)r->buflen;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  b[3] = 1;
#else
  b[3] = 0;
#endif
  b[4] = (unsigned char)h.fh.handle_type;
  memcpy(b + 5, u.uuid, u.len);
  memcpy(b + HDR, h.fh.f_handle, h.fh.handle_bytes);
}

/* ---------- JS-thread side ---------- */

static void req_free(req_t *r) {
  free(r->path1);
  free(r->path2);
  free(r->name);
  free(r->buf);
  free(r);
}

static napi_status set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_status s = napi_create_double(env, v, &n);
  return s != napi_ok ? s : napi_set_named_property(env, obj, key, n);
}

static napi_status make_result(napi_env env, req_t *r, napi_value *out) {
  napi_status s;
  switch (r->op) {
  case OP_LGETXATTR:
  case OP_LLISTXATTR:
  case OP_READDIR:
  case OP_OVLFH:
    return napi_create_buffer_copy(env, r->buflen, r->buf ? r->buf : "", NULL, out);
  case OP_COPYDATA: return napi_create_double(env, (double)r->result, out);
  case OP_STATFS:
    if ((s = napi_create_object(env, out)) != napi_ok) return s;
#define F(k) if ((s = set_num(env, *out, #k, (double)r->sv.f_##k)) != napi_ok) return s
    F(bsize); F(frsize); F(blocks); F(bfree); F(bavail); F(files); F(ffree);
    F(favail); F(fsid); F(flag); F(namemax);
#undef F
    return napi_ok;
  default: return napi_get_undefined(env, out);
  }
}

/* The outcome of a finished request: its value (*ok = 1), or the Error to
 * reject or throw with (*ok = 0), carrying errno, syscall and errname. */
static void settle(napi_env env, req_t *r, napi_value *val, int *ok) {
  napi_value msg, tmp;
  *ok = 1;
  if (r->op == OP_LGETXATTR && r->err == ENODATA) {
    napi_get_null(env, val);
    return;
  }
  if (r->err == 0 && make_result(env, r, val) == napi_ok) return;
  *ok = 0;
  int e = r->err ? r->err : ENOMEM;
  napi_create_string_utf8(env, strerror(e), NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, val);
  napi_create_int32(env, e, &tmp);
  napi_set_named_property(env, *val, "errno", tmp);
  napi_create_string_utf8(env, r->syscall ? r->syscall : op_names[r->op],
                          NAPI_AUTO_LENGTH, &tmp);
  napi_set_named_property(env, *val, "syscall", tmp);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
  /* fallback name for errnos Node's os.constants.errno lacks (EUCLEAN...) */
  const char *ename = strerrorname_np(e);
  if (ename != NULL) {
    napi_create_string_utf8(env, ename, NAPI_AUTO_LENGTH, &tmp);
    napi_set_named_property(env, *val, "errname", tmp);
  }
#endif
}

static void complete(napi_env env, napi_status status, void *data) {
  req_t *r = data;
  napi_value val;
  int ok;
  if (status != napi_ok && r->err == 0) { r->err = ECANCELED; r->syscall = "async_work"; }
  settle(env, r, &val, &ok);
  if (ok) napi_resolve_deferred(env, r->deferred, val);
  else napi_reject_deferred(env, r->deferred, val);
  napi_delete_async_work(env, r->work);
  req_free(r);
}

/* Copy a string (UTF-8) or Buffer argument into a NUL-terminated heap string.
 * Buffers keep their raw bytes; an embedded NUL is a TypeError as in fs. */
static int get_bytes(napi_env env, napi_value v, const char *what, char **out,
                     size_t *len, int nul_ok) {
  bool isbuf = false;
  napi_valuetype t;
  size_t n = 0;
  char *p = NULL;
  CHECK(napi_is_buffer(env, v, &isbuf));
  if (isbuf) {
    void *data;
    CHECK(napi_get_buffer_info(env, v, &data, &n));
    if ((p = malloc(n + 1)) == NULL) goto oom;
    if (n) memcpy(p, data, n);
  } else {
    CHECK(napi_typeof(env, v, &t));
    if (t != napi_string) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
      return -1;
    }
    CHECK(napi_get_value_string_utf8(env, v, NULL, 0, &n));
    if ((p = malloc(n + 1)) == NULL) goto oom;
    CHECK(napi_get_value_string_utf8(env, v, p, n + 1, &n));
  }
  p[n] = '\0';
  if (!nul_ok && memchr(p, '\0', n) != NULL) {
    free(p);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", what);
    return -1;
  }
  *out = p;
  if (len) *len = n;
  return 0;
oom:
  napi_throw_error(env, "ENOMEM", "out of memory");
  return -1;
fail:
  free(p);
  return -1;
}

static int get_i64(napi_env env, napi_value v, const char *what, int64_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
    return -1;
  }
  return napi_get_value_int64(env, v, out) == napi_ok ? 0 : -1;
}

/* argv[i], argv[i+1] = sec, nsec */
static int get_ts(napi_env env, napi_value *argv, struct timespec *ts) {
  int64_t sec, nsec;
  if (get_i64(env, argv[0], "timespec sec must be a number", &sec) < 0 ||
      get_i64(env, argv[1], "timespec nsec must be a number", &nsec) < 0)
    return -1;
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)nsec;
  return 0;
}

static const int op_argc[OP_COUNT] = {
  [OP_LGETXATTR] = 2, [OP_LSETXATTR] = 4, [OP_LLISTXATTR] = 1,
  [OP_LREMOVEXATTR] = 2, [OP_MKNOD] = 3, [OP_RENAMEAT2] = 3,
  [OP_UTIMENSAT] = 6, [OP_FUTIMENS] = 5, [OP_COPYDATA] = 3,
  [OP_FSYNCPATH] = 1, [OP_STATFS] = 1, [OP_READDIR] = 1, [OP_OVLFH] = 1,
};

/* The Sync variants' data pointers carry this flag beside the op code. */
#define SYNC_FLAG 0x100

/* The single JS entry point; the op code is the function's data pointer.
 * Parses the arguments into a req_t and queues it on the thread pool, or,
 * for the Sync variant, runs it here and returns its value or throws. */
static napi_value dispatch(napi_env env, napi_callback_info info) {
  napi_value argv[6], promise = NULL, name;
  size_t argc = 6;
  void *data;
  int sync;
  req_t *r = calloc(1, sizeof *r);
  if (r == NULL) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, &data));
  sync = ((intptr_t)data & SYNC_FLAG) != 0;
  r->op = (enum op)((intptr_t)data & ~(intptr_t)SYNC_FLAG);
  if (argc < (size_t)op_argc[r->op]) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "not enough arguments");
    goto fail;
  }
  switch (r->op) {
  case OP_FUTIMENS:
    if (get_i64(env, argv[0], "fd must be a number", &r->n1) < 0 ||
        get_ts(env, argv + 1, &r->ts[0]) < 0 || get_ts(env, argv + 3, &r->ts[1]) < 0)
      goto fail;
    break;
  default:
    if (get_bytes(env, argv[0], "path must be a string or Buffer without null bytes",
                  &r->path1, NULL, 0) < 0)
      goto fail;
    break;
  }
  switch (r->op) {
  case OP_LGETXATTR: case OP_LREMOVEXATTR: case OP_LSETXATTR:
    if (get_bytes(env, argv[1], "name must be a string or Buffer without null bytes",
                  &r->name, NULL, 0) < 0)
      goto fail;
    if (r->op == OP_LSETXATTR &&
        (get_bytes(env, argv[2], "value must be a Buffer", &r->buf, &r->buflen, 1) < 0 ||
         get_i64(env, argv[3], "flags must be a number", &r->n1) < 0))
      goto fail;
    break;
  case OP_MKNOD:
    if (get_i64(env, argv[1], "mode must be a number", &r->n1) < 0 ||
        get_i64(env, argv[2], "dev must be a number", &r->n2) < 0)
      goto fail;
    break;
  case OP_RENAMEAT2: case OP_COPYDATA:
    if (get_bytes(env, argv[1], "path must be a string or Buffer without null bytes",
                  &r->path2, NULL, 0) < 0 ||
        get_i64(env, argv[2], "flags/mode must be a number", &r->n1) < 0)
      goto fail;
    if (r->op == OP_COPYDATA && argc > 3 &&
        get_i64(env, argv[3], "flags must be a number", &r->n2) < 0)
      goto fail;
    break;
  case OP_UTIMENSAT:
    if (get_ts(env, argv + 1, &r->ts[0]) < 0 || get_ts(env, argv + 3, &r->ts[1]) < 0 ||
        get_i64(env, argv[5], "nofollow must be a number", &r->n1) < 0)
      goto fail;
    break;
  default: break;
  }
  if (sync) {
    napi_value val;
    int ok;
    execute(env, r);
    settle(env, r, &val, &ok);
    req_free(r);
    if (!ok) { napi_throw(env, val); return NULL; }
    return val;
  }
  CHECK(napi_create_string_utf8(env, op_names[r->op], NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_promise(env, &r->deferred, &promise));
  CHECK(napi_create_async_work(env, NULL, name, execute, complete, r, &r->work));
  if (napi_queue_async_work(env, r->work) != napi_ok) {
    napi_delete_async_work(env, r->work);
    napi_throw_error(env, NULL, "napi_queue_async_work failed");
    goto fail; /* the promise is dropped unsettled; the caller sees the throw */
  }
  return promise;
fail:
  req_free(r);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  for (int op = 0; op < OP_COUNT; op++) {
    napi_value fn, fnSync;
    char syncName[64];
    snprintf(syncName, sizeof syncName, "%sSync", op_names[op]);
    if (napi_create_function(env, op_names[op], NAPI_AUTO_LENGTH, dispatch,
                             (void *)(intptr_t)op, &fn) != napi_ok ||
        napi_set_named_property(env, exports, op_names[op], fn) != napi_ok ||
        napi_create_function(env, syncName, NAPI_AUTO_LENGTH, dispatch,
                             (void *)(intptr_t)(op | SYNC_FLAG), &fnSync) != napi_ok ||
        napi_set_named_property(env, exports, syncName, fnSync) != napi_ok)
      return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
