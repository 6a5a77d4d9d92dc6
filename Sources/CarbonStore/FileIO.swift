#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The system calls the `path:` backend makes to write, as replaceable functions, so tests can
/// stop a writer at each step or inject I/O errors (EIO, ENOSPC) where they would happen.
/// Each returns 0 (or a count/descriptor) on success and -1 with `errno` set on failure, like the
/// C calls they stand for.
public struct FileIO: Sendable {
    public var open: @Sendable (_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32
    public var write: @Sendable (_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int
    public var fsync: @Sendable (_ fd: Int32) -> Int32
    public var close: @Sendable (_ fd: Int32) -> Int32
    public var rename: @Sendable (_ from: String, _ to: String) -> Int32
    public var unlink: @Sendable (_ path: String) -> Int32

    public init(
        open: @escaping @Sendable (String, Int32, mode_t) -> Int32,
        write: @escaping @Sendable (Int32, UnsafeRawBufferPointer) -> Int,
        fsync: @escaping @Sendable (Int32) -> Int32,
        close: @escaping @Sendable (Int32) -> Int32,
        rename: @escaping @Sendable (String, String) -> Int32,
        unlink: @escaping @Sendable (String) -> Int32
    ) {
        self.open = open
        self.write = write
        self.fsync = fsync
        self.close = close
        self.rename = rename
        self.unlink = unlink
    }

    /// The real system calls.
    public static let posix = FileIO(
        open: { path, flags, mode in
            #if canImport(Glibc)
                Glibc.open(path, flags, mode)
            #elseif canImport(Musl)
                Musl.open(path, flags, mode)
            #else
                Darwin.open(path, flags, mode)
            #endif
        },
        write: { fd, buffer in
            #if canImport(Glibc)
                Glibc.write(fd, buffer.baseAddress, buffer.count)
            #elseif canImport(Musl)
                Musl.write(fd, buffer.baseAddress, buffer.count)
            #else
                Darwin.write(fd, buffer.baseAddress, buffer.count)
            #endif
        },
        fsync: { fd in
            #if canImport(Glibc)
                Glibc.fsync(fd)
            #elseif canImport(Musl)
                Musl.fsync(fd)
            #else
                // On Darwin fsync does not reach the platter; F_FULLFSYNC does.
                Darwin.fcntl(fd, F_FULLFSYNC) == -1 ? Darwin.fsync(fd) : 0
            #endif
        },
        close: { fd in
            #if canImport(Glibc)
                Glibc.close(fd)
            #elseif canImport(Musl)
                Musl.close(fd)
            #else
                Darwin.close(fd)
            #endif
        },
        rename: { from, to in
            #if canImport(Glibc)
                Glibc.rename(from, to)
            #elseif canImport(Musl)
                Musl.rename(from, to)
            #else
                Darwin.rename(from, to)
            #endif
        },
        unlink: { path in
            #if canImport(Glibc)
                Glibc.unlink(path)
            #elseif canImport(Musl)
                Musl.unlink(path)
            #else
                Darwin.unlink(path)
            #endif
        }
    )
}
