import CSystemCalls

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The system calls the `path:` backend makes to create directories and to write, as replaceable
/// functions, so that the package's tests can stop a writer at each step or inject I/O errors
/// (EIO, ENOSPC) where they would happen. Package-internal: nothing that ships can replace them.
///
/// Every name is relative to an open directory descriptor (`AT_FDCWD` for an absolute path), so
/// the backend never resolves a path below its root through a symbolic link. Each call returns 0
/// (or a count or descriptor) on success and -1 with `errno` set on failure, like the C call it
/// stands for.
package struct FileIO: Sendable {
    package var openat:
        @Sendable (_ directory: Int32, _ name: String, _ flags: Int32, _ mode: mode_t) -> Int32
    package var mkdirat: @Sendable (_ directory: Int32, _ name: String, _ mode: mode_t) -> Int32
    package var write: @Sendable (_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int
    package var fsync: @Sendable (_ fd: Int32) -> Int32
    package var close: @Sendable (_ fd: Int32) -> Int32
    /// Renames `from` to `to`, both in `directory`.
    package var renameat: @Sendable (_ directory: Int32, _ from: String, _ to: String) -> Int32
    package var unlinkat: @Sendable (_ directory: Int32, _ name: String) -> Int32
    /// Cuts a file to a length (a torn append, before the next one).
    package var ftruncate: @Sendable (_ fd: Int32, _ length: Int) -> Int32
    /// Makes a file's data and size durable (an append); `fdatasync`.
    package var datasync: @Sendable (_ fd: Int32) -> Int32
    /// Writes at an offset (an append's frame, where the file's valid content ends); `pwrite`.
    package var pwrite: @Sendable (_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int) -> Int
    /// Writes zero bytes from `from` to `to` (an append's reserve, beyond its frame); 0, or -1 with
    /// `errno` set.
    package var reserve: @Sendable (_ fd: Int32, _ from: Int, _ to: Int) -> Int32
    /// Opens the folder at a relative path below an open directory in one call, through no symbolic
    /// link and no `..` (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`); -1 with `errno`
    /// set, ENOSYS where the call does not exist.
    package var openDirectoryBeneath: @Sendable (_ directory: Int32, _ path: String) -> Int32

    package init(
        openat: @escaping @Sendable (Int32, String, Int32, mode_t) -> Int32,
        mkdirat: @escaping @Sendable (Int32, String, mode_t) -> Int32,
        write: @escaping @Sendable (Int32, UnsafeRawBufferPointer) -> Int,
        fsync: @escaping @Sendable (Int32) -> Int32,
        close: @escaping @Sendable (Int32) -> Int32,
        renameat: @escaping @Sendable (Int32, String, String) -> Int32,
        unlinkat: @escaping @Sendable (Int32, String) -> Int32,
        ftruncate: @escaping @Sendable (Int32, Int) -> Int32 = { fd, length in systemFtruncate(fd, length) },
        datasync: @escaping @Sendable (Int32) -> Int32 = { fd in systemDatasync(fd) },
        pwrite: @escaping @Sendable (Int32, UnsafeRawBufferPointer, Int) -> Int = { fd, buffer, offset in
            systemPwrite(fd, buffer.baseAddress, buffer.count, offset)
        },
        reserve: @escaping @Sendable (Int32, Int, Int) -> Int32 = { fd, from, to in
            systemReserve(fd, from, to)
        },
        openDirectoryBeneath: @escaping @Sendable (Int32, String) -> Int32 = { directory, path in
            systemOpenDirectoryBeneath(directory, path)
        }
    ) {
        self.openat = openat
        self.mkdirat = mkdirat
        self.write = write
        self.fsync = fsync
        self.close = close
        self.renameat = renameat
        self.unlinkat = unlinkat
        self.ftruncate = ftruncate
        self.datasync = datasync
        self.pwrite = pwrite
        self.reserve = reserve
        self.openDirectoryBeneath = openDirectoryBeneath
    }

    /// The real system calls.
    package static let posix = FileIO(
        openat: { dir, name, flags, mode in systemOpenat(dir, name, flags, mode) },
        mkdirat: { dir, name, mode in systemMkdirat(dir, name, mode) },
        write: { fd, buffer in systemWrite(fd, buffer.baseAddress, buffer.count) },
        fsync: { fd in
            #if canImport(Darwin)
                // On Darwin fsync does not reach the platter; F_FULLFSYNC does.
                Darwin.fcntl(fd, F_FULLFSYNC) == -1 ? Darwin.fsync(fd) : 0
            #else
                systemFsync(fd)
            #endif
        },
        close: { fd in systemClose(fd) },
        renameat: { dir, from, to in systemRenameat(dir, from, dir, to) },
        unlinkat: { dir, name in systemUnlinkat(dir, name, 0) }
    )
}

// The C library's functions, under names that the closures above cannot confuse with their own.
// Names are passed with `withCString`, which hands a short name over from the stack: the implicit
// conversion of a `String` argument copies it into an array on the heap at every call.
private let systemOpenat: @Sendable (Int32, String, Int32, mode_t) -> Int32 = { dir, name, flags, mode in
    name.withCString { openat(dir, $0, flags, mode) }
}
private let systemMkdirat: @Sendable (Int32, String, mode_t) -> Int32 = { dir, name, mode in
    name.withCString { mkdirat(dir, $0, mode) }
}
private let systemWrite: @Sendable (Int32, UnsafeRawPointer?, Int) -> Int = { write($0, $1, $2) }
private let systemFsync: @Sendable (Int32) -> Int32 = { fsync($0) }
private let systemClose: @Sendable (Int32) -> Int32 = { close($0) }
private let systemRenameat: @Sendable (Int32, String, Int32, String) -> Int32 = { from, old, to, new in
    old.withCString { o in new.withCString { renameat(from, o, to, $0) } }
}
private let systemFtruncate: @Sendable (Int32, Int) -> Int32 = { ftruncate($0, off_t($1)) }
private let systemDatasync: @Sendable (Int32) -> Int32 = { fd in
    #if canImport(Darwin)
        Darwin.fcntl(fd, F_FULLFSYNC) == -1 ? Darwin.fsync(fd) : 0
    #else
        fdatasync(fd)
    #endif
}
private let systemPwrite: @Sendable (Int32, UnsafeRawPointer?, Int, Int) -> Int = {
    pwrite($0, $1, $2, off_t($3))
}
private let systemReserve: @Sendable (Int32, Int, Int) -> Int32 = { fd, from, to in
    let zeros = [UInt8](repeating: 0, count: min(max(to - from, 0), 65_536))
    var at = from
    while at < to {
        let n = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, min($0.count, to - at), off_t(at)) }
        if n < 0 {
            if errno == EINTR { continue }
            return -1
        }
        if n == 0 {
            errno = EIO
            return -1
        }
        at += n
    }
    return 0
}
let systemOpenDirectoryBeneath: @Sendable (Int32, String) -> Int32 = { dir, path in
    path.withCString { carbonstore_open_directory_beneath(dir, $0) }
}
private let systemUnlinkat: @Sendable (Int32, String, Int32) -> Int32 = { dir, name, flags in
    name.withCString { unlinkat(dir, $0, flags) }
}
