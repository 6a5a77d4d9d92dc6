import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The physical limit of a whole-file rewrite, the baseline of the benchmarks' durable updates:
/// what any correct writer must at least do.
public enum RawDurableWrite {
    /// Replaces `dir/raw.cstore` with `bytes`: a temporary file, write, fsync, rename over the
    /// target, and (with `fsyncDirectory`) an fsync of the folder. Stops the program on any error.
    public static func replace(_ bytes: [UInt8], in dir: String, fsyncDirectory: Bool = true) {
        let temp = dir + "/.tmp-raw"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "open \(temp): errno \(errno)")
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        precondition(written == bytes.count, "short write to \(temp)")
        precondition(fsync(fd) == 0, "fsync \(temp): errno \(errno)")
        close(fd)
        precondition(rename(temp, dir + "/raw.cstore") == 0, "rename: errno \(errno)")
        if fsyncDirectory {
            let d = open(dir, O_RDONLY | O_DIRECTORY)
            precondition(d >= 0 && fsync(d) == 0, "fsync \(dir): errno \(errno)")
            close(d)
        }
    }
}
