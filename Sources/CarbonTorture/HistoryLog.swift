import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One worker's history: a line per event, appended with O_APPEND so that a worker killed at any
/// moment leaves every line it finished writing.
///
///     invoke OP USER        before the update starts
///     ok OP REVISION        the update was acknowledged
///     fail OP REASON        the update definitely did not happen (nothing was written)
///     unknown OP REASON     the outcome is not known (an I/O or network failure mid-write)
public final class HistoryLog: @unchecked Sendable {
    let fd: Int32
    public let path: String

    public init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        self.path = path
    }

    deinit { close(fd) }

    public func append(_ line: String) {
        let bytes = Array((line.replacingOccurrences(of: "\n", with: " ") + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}

/// What the logs say about every operation.
public struct History: Sendable {
    public enum Outcome: String, Sendable, Codable { case pending, ok, fail, unknown }

    public var invoked: [String: String] = [:]  // op -> user
    public var outcome: [String: Outcome] = [:]

    /// Reads every `*.log` file in a directory.
    public static func read(directory: String) throws -> History {
        var h = History()
        for name in try FileManager.default.contentsOfDirectory(atPath: directory)
        where name.hasSuffix(".log") {
            let text = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ", maxSplits: 2).map(String.init)
                guard f.count >= 2 else { continue }
                switch f[0] {
                case "invoke":
                    h.invoked[f[1]] = f.count > 2 ? f[2] : ""
                    h.outcome[f[1]] = .pending
                case "ok": h.outcome[f[1]] = .ok
                case "fail": h.outcome[f[1]] = .fail
                case "unknown": h.outcome[f[1]] = .unknown
                default: continue
                }
            }
        }
        return h
    }
}
