import CarbonFormat

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a writer needs to know of an open file (its type and permissions, owner, link count and
/// size), asked for without the file's time stamps where the system allows it.
///
/// Why not `fstat`: from Linux 6.13 on, asking for a file's change or modification time marks it,
/// and the file's next change then takes a fine-grained time stamp instead of the coarse one (a
/// clock tick) that would most often be unchanged. A new time stamp makes the inode dirty, and on
/// some file systems (ext4 without a journal) the next `fdatasync` writes the inode's block again:
/// one more disk write per append. So a writer asks `statx` for these fields alone, and the append
/// path asks for a time stamp only where the record cache needs one (docs/STORAGE.md, "A file's
/// version names one content for ever"). Where `statx` cannot be found (not Linux, an old C
/// library) it is `fstat`.
struct FileStatus: Sendable {
    /// The type and permission bits (`st_mode`).
    var mode: mode_t
    var owner: uid_t
    var links: Int
    var size: Int
    /// The file's identity: its device (major and minor numbers) and inode number.
    var device: (major: UInt32, minor: UInt32)
    var inode: UInt64

    var isRegularFile: Bool { (mode & S_IFMT) == S_IFREG }

    // The flags of `statx` (linux/fcntl.h).
    private static let atEmptyPath: Int32 = 0x1000
    private static let atSymlinkNoFollow: Int32 = 0x100

    /// Whether `other` is the same file (device and inode).
    func isSameFile(as other: FileStatus) -> Bool {
        device == other.device && inode == other.inode
    }

    /// The status of `fd`; nil with `errno` set if it cannot be had.
    static func of(_ fd: Int32) -> FileStatus? {
        status(at: fd, "", flags: atEmptyPath) {
            var st = stat(); return fstat(fd, &st) == 0 ? st : nil
        }
    }

    /// The status of the entry `name` of the folder `dir`, not following a symbolic link; nil with
    /// `errno` set if it cannot be had.
    static func of(_ name: String, in dir: Int32) -> FileStatus? {
        status(at: dir, name, flags: atSymlinkNoFollow) {
            var st = stat()
            return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st : nil
        }
    }

    /// The status of the file at `path` (absolute, or relative to the working directory), following
    /// a symbolic link; nil with `errno` set if it cannot be had.
    static func of(atPath path: String) -> FileStatus? {
        status(at: AT_FDCWD, path, flags: 0) {
            var st = stat()
            return stat(path, &st) == 0 ? st : nil
        }
    }

    private static func status(at dir: Int32, _ name: String, flags: Int32, orStat: () -> stat?)
        -> FileStatus?
    {
        #if os(Linux) && (arch(x86_64) || arch(arm64))
            if let statx = Self.statx {
                // `struct statx` (linux/stat.h, 256 bytes): stx_mask u32 at 0, stx_nlink u32 at 16,
                // stx_uid u32 at 20, stx_mode u16 at 28, stx_ino u64 at 32, stx_size u64 at 40,
                // stx_dev_major u32 at 136, stx_dev_minor u32 at 140. On the stack: nothing to free
                // after the call, which could change `errno`.
                let wanted = statxType | statxMode | statxLinks | statxOwner | statxInode | statxSize
                let status = withUnsafeTemporaryAllocation(byteCount: 256, alignment: 16) {
                    buffer -> FileStatus? in
                    guard let base = buffer.baseAddress,
                        name.withCString({ statx(dir, $0, flags, wanted, base) }) == 0,
                        buffer.load(fromByteOffset: 0, as: UInt32.self) & wanted == wanted
                    else { return nil }
                    return FileStatus(
                        mode: mode_t(buffer.load(fromByteOffset: 28, as: UInt16.self)),
                        owner: uid_t(buffer.load(fromByteOffset: 20, as: UInt32.self)),
                        links: Int(buffer.load(fromByteOffset: 16, as: UInt32.self)),
                        size: Int(buffer.load(fromByteOffset: 40, as: UInt64.self)),
                        device: (
                            buffer.load(fromByteOffset: 136, as: UInt32.self),
                            buffer.load(fromByteOffset: 140, as: UInt32.self)
                        ),
                        inode: buffer.load(fromByteOffset: 32, as: UInt64.self))
                }
                if let status { return status }
                // Refused (a seccomp profile that answers EPERM, a kernel without it), or a field
                // the file system did not fill: `fstat` answers, as it does where `statx` is missing.
            }
        #endif
        guard let st = orStat() else { return nil }
        // glibc's encoding of a device number (`gnu_dev_major`, `gnu_dev_minor`).
        let dev = UInt64(st.st_dev)
        let major = UInt32(truncatingIfNeeded: ((dev >> 32) & 0xFFFF_F000) | ((dev >> 8) & 0xFFF))
        let minor = UInt32(truncatingIfNeeded: ((dev >> 12) & 0xFFFF_FF00) | (dev & 0xFF))
        return FileStatus(
            mode: st.st_mode, owner: st.st_uid, links: Int(st.st_nlink), size: Int(st.st_size),
            device: (major, minor), inode: UInt64(st.st_ino))
    }

    #if os(Linux) && (arch(x86_64) || arch(arm64))
        // The `statx` mask bits and flag (linux/stat.h, linux/fcntl.h).
        private static let statxType: UInt32 = 0x1
        private static let statxMode: UInt32 = 0x2
        private static let statxLinks: UInt32 = 0x4
        private static let statxOwner: UInt32 = 0x8
        private static let statxInode: UInt32 = 0x100
        private static let statxSize: UInt32 = 0x200

        /// The C library's `statx`, which the Swift overlay of Glibc does not export (it needs
        /// `_GNU_SOURCE`); nil if it cannot be found.
        private static let statx = SharedLibrary.loaded.symbol(
            "statx",
            (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UInt32, UnsafeMutableRawPointer) -> Int32)
                .self)
    #endif
}

extension PathStorage {
    /// The size of the file at `path` (absolute, or relative to the working directory), asked for
    /// without its time stamps (`statx`; `stat` where there is none); nil if there is no such file.
    /// For tools and benchmarks that look at a file between two writes of its writer: from Linux
    /// 6.13 on, a `stat` there makes the writer's next write stamp a fine-grained change time,
    /// which its next `fdatasync` may have to write.
    public static func sizeWithoutTimeStamps(ofFileAt path: String) -> Int? {
        FileStatus.of(atPath: path)?.size
    }
}
