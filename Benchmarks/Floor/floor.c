// What one W1 append costs in system calls and disk time alone, without the engine, beside SQLite's
// commit of the same row: the floor under the W1 append row of issue 9's Goals table
// (docs/BENCHMARKS.md, "Round seven"). Build and run from the repository's root:
//
//     cc -O2 Benchmarks/Floor/floor.c -lsqlite3 -o .build/floor-bench && .build/floor-bench .build/floor-data 2000 3
//
// (the folder is created; 2000 appends per case; 3 rounds, the cases alternating within each).
// It needs SQLite's header and library (Debian: libsqlite3-dev). Each case starts from a fresh
// 86,000-byte file (W1's size after some appends) and appends a 124-byte frame per iteration:
//
// - "today's calls": the system calls that `strace -f` shows for one update of the engine on
//   `path:` with `locking=local`, in their order: the folders walked three times from the root, the
//   user's lock file opened, locked and written, the version check (open, fstat, two reads), the
//   commit lock, the append with its fence and landing check, the user's lock let go, the
//   `fdatasync`, the closing `fstat`.
// - "kept open, file grows": the same protocol with every descriptor kept open between updates:
//   the user's lock, `statx` of the size, the fence's two reads, the commit lock, the write, the
//   `fdatasync`, the locks let go.
// - "kept open, over reserved zeros": the same, writing over zeros reserved beforehand (the file
//   does not grow), with `statx` asking for no time stamp.
// - "... and fstat": the same, with `fstat` instead of `statx`: asking for the change time makes
//   the next write stamp the inode finely, which the `fdatasync` then writes (Linux's multigrain
//   time stamps).
// - "bare ...": the write and the `fdatasync` alone.
// - SQLite in WAL mode with synchronous=FULL: one INSERT of the row (prepared, autocommit) into a
//   table of 1,000 rows, as the Goals table's peer does through GRDB.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

enum { FRAME = 124, BASE = 86000, RESERVED = 1 << 20 };

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "floor: %s failed: %s\n", what, strerror(errno));
        exit(1);
    }
}

static char folder[4096];

static void path_of(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", folder, name); }

// A fresh user file of BASE bytes, with RESERVED zeros after them if asked; synced.
static int fresh_user_file(int reserve) {
    char p[4200];
    path_of(p, sizeof p, "a/b/user.cstore");
    unlink(p);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    check(fd >= 0, "creating the user file");
    static char base[BASE], zeros[RESERVED];
    memset(base, 1, sizeof base);
    check(pwrite(fd, base, sizeof base, 0) == BASE, "writing the user file");
    if (reserve) check(pwrite(fd, zeros, sizeof zeros, BASE) == RESERVED, "reserving zeros");
    check(fsync(fd) == 0, "fsync");
    return fd;
}

static int open_folder(void) {
    int root = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int a = openat(root, "a", O_RDONLY | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    close(root);
    int b = openat(a, "b", O_RDONLY | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    close(a);
    check(b >= 0, "walking the folders");
    return b;
}

enum Case { TODAY, KEPT_GROWS, KEPT_ZEROS, KEPT_ZEROS_FSTAT, BARE_GROWS, BARE_ZEROS, SQLITE, CASES };
static const char *names[CASES] = {
    "today's calls (file grows)",
    "kept open, file grows",
    "kept open, over reserved zeros",
    "kept open, over reserved zeros, and fstat",
    "bare write + fdatasync, file grows",
    "bare write + fdatasync, over reserved zeros",
    "SQLite WAL synchronous=FULL, one INSERT",
};

static void run_sqlite(double *times, int n) {
    char p[4200];
    path_of(p, sizeof p, "peer.sqlite");
    unlink(p);
    char wal[4300];
    snprintf(wal, sizeof wal, "%s-wal", p);
    unlink(wal);
    sqlite3 *db;
    check(sqlite3_open(p, &db) == SQLITE_OK, "opening SQLite");
    check(sqlite3_exec(db,
              "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
              "CREATE TABLE t(id TEXT PRIMARY KEY, time INTEGER, amount INTEGER, currency TEXT,"
              " merchant TEXT, mcc INTEGER);",
              0, 0, 0) == SQLITE_OK,
        "creating the table");
    sqlite3_stmt *insert;
    check(sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?, ?, 1234, 'EUR', 'Bench Merchant', 5411)", -1, &insert, 0)
            == SQLITE_OK,
        "preparing the insert");
    char id[32];
    for (int i = 0; i < 1000 + n; i++) {
        snprintf(id, sizeof id, "%s-%d", i < 1000 ? "seed" : "bench", i);
        double start = now_us();
        sqlite3_bind_text(insert, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(insert, 2, 1800000000000LL + i);
        check(sqlite3_step(insert) == SQLITE_DONE, "inserting");
        sqlite3_reset(insert);
        if (i >= 1000) times[i - 1000] = now_us() - start;
    }
    sqlite3_finalize(insert);
    sqlite3_close(db);
}

static void run_case(enum Case c, double *times, int n) {
    if (c == SQLITE) {
        run_sqlite(times, n);
        return;
    }
    int reserve = c == KEPT_ZEROS || c == KEPT_ZEROS_FSTAT || c == BARE_ZEROS;
    int user = fresh_user_file(reserve);
    int dir = open_folder();
    int lock = openat(dir, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    int commit = openat(dir, ".commit.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    check(lock >= 0 && commit >= 0, "opening the lock files");
    char frame[FRAME], holder[128], tail[FRAME];
    memset(frame, 7, sizeof frame);
    memset(holder, 'h', sizeof holder);
    off_t end = BASE;
    for (int i = 0; i < n; i++) {
        double start = now_us();
        struct stat st;
        struct statx sx;
        switch (c) {
        case TODAY: {
            // The lock service.
            int d1 = open_folder();
            int l = openat(d1, ".lock", O_RDWR | O_CREAT | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0600);
            fstat(l, &st);
            (void)geteuid();
            check(flock(l, LOCK_EX | LOCK_NB) == 0, "flock");
            fstat(l, &st);
            pwrite(l, holder, sizeof holder, 0);
            close(d1);
            // The version check.
            int d2 = open_folder();
            int r = openat(d2, "user.cstore", O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
            fstat(r, &st);
            pread(r, tail, 16, 12);
            pread(r, tail, 16, end - 16);
            close(r);
            close(d2);
            // The append.
            int d3 = open_folder();
            int cl = openat(d3, ".commit.lock", O_RDWR | O_CREAT | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0600);
            fstat(cl, &st);
            (void)geteuid();
            check(flock(cl, LOCK_EX | LOCK_NB) == 0, "flock");
            int w = openat(d3, "user.cstore", O_RDWR | O_APPEND | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
            fstat(w, &st);
            (void)geteuid();
            pread(w, tail, 16, 12);
            pread(w, tail, 16, end - 16);
            check(write(w, frame, sizeof frame) == FRAME, "write");
            lseek(w, 0, SEEK_CUR);
            pread(w, tail, FRAME, end);
            struct statfs fs;
            fstatfs(w, &fs);
            flock(l, LOCK_UN);
            close(l);
            check(fdatasync(w) == 0, "fdatasync");
            fstat(w, &st);
            close(w);
            flock(cl, LOCK_UN);
            close(cl);
            close(d3);
            break;
        }
        case KEPT_GROWS:
        case KEPT_ZEROS:
        case KEPT_ZEROS_FSTAT:
            check(flock(lock, LOCK_EX) == 0, "flock");
            if (c == KEPT_ZEROS_FSTAT)
                fstat(user, &st);
            else
                statx(user, "", AT_EMPTY_PATH, STATX_INO | STATX_SIZE, &sx);
            pread(user, tail, 16, 12);
            pread(user, tail, 16, end - 16);
            check(flock(commit, LOCK_EX) == 0, "flock");
            check(pwrite(user, frame, sizeof frame, end) == FRAME, "pwrite");
            check(fdatasync(user) == 0, "fdatasync");
            flock(commit, LOCK_UN);
            flock(lock, LOCK_UN);
            break;
        default:
            check(pwrite(user, frame, sizeof frame, end) == FRAME, "pwrite");
            check(fdatasync(user) == 0, "fdatasync");
        }
        end += FRAME;
        times[i] = now_us() - start;
    }
    close(lock);
    close(commit);
    close(dir);
    close(user);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: floor FOLDER [APPENDS [ROUNDS]]\n");
        return 2;
    }
    snprintf(folder, sizeof folder, "%s", argv[1]);
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    if (n < 10 || n * FRAME > RESERVED || rounds < 1) {
        fprintf(stderr, "floor: APPENDS must be 10 to %d, ROUNDS at least 1\n", RESERVED / FRAME);
        return 2;
    }
    char p[4200];
    mkdir(folder, 0700);
    path_of(p, sizeof p, "a");
    mkdir(p, 0700);
    path_of(p, sizeof p, "a/b");
    mkdir(p, 0700);
    double *times = malloc(sizeof(double) * n);
    printf("%d appends per case, p50 and p90 in µs\n", n);
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < CASES; c++) {
            run_case(c, times, n);
            qsort(times, n, sizeof(double), compare_doubles);
            printf("round %d  %-44s p50 %6.1f  p90 %6.1f\n", r + 1, names[c], times[n / 2], times[n * 9 / 10]);
            fflush(stdout);
        }
    }
    free(times);
    return 0;
}
