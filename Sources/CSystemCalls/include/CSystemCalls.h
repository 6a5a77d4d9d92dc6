#ifndef CARBONSTORE_SYSTEM_CALLS_H
#define CARBONSTORE_SYSTEM_CALLS_H

// System calls that the C library does not wrap, for CarbonStore's `path:` backend.

/// Opens the directory at `path`, relative to the open directory `directory` and below it
/// (read-only, close-on-exec), in one call, refusing every symbolic link and `..` on the way: Linux's
/// `openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH` (Linux 5.6 and later). Returns the
/// descriptor, or -1 with `errno` set: ELOOP when a component is a symbolic link, ENOTDIR when one
/// is not a directory, EXDEV when the path would leave `directory`, and ENOSYS where the call does
/// not exist (other systems, older kernels; a seccomp filter may answer ENOSYS or EPERM).
int carbonstore_open_directory_beneath(int directory, const char *path);

#endif
