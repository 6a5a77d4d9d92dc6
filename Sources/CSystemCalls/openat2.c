#include "CSystemCalls.h"

#include <errno.h>

#if defined(__linux__)
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

// `struct open_how` and the flag of <linux/openat2.h>, written out so that the build does not need
// the kernel's headers. 437 is `openat2` on every architecture that Linux numbers alike since 5.6.
struct carbonstore_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
#define CARBONSTORE_RESOLVE_NO_SYMLINKS 0x04
#define CARBONSTORE_RESOLVE_BENEATH 0x08
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

int carbonstore_open_directory_beneath(int directory, const char *path) {
    struct carbonstore_open_how how = {
        .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
        .mode = 0,
        .resolve = CARBONSTORE_RESOLVE_NO_SYMLINKS | CARBONSTORE_RESOLVE_BENEATH,
    };
    return (int)syscall(SYS_openat2, directory, path, &how, sizeof how);
}
#else
int carbonstore_open_directory_beneath(int directory, const char *path) {
    (void)directory;
    (void)path;
    errno = ENOSYS;
    return -1;
}
#endif
