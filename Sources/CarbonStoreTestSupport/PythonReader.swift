import Foundation

/// The independent Python reader of user files (`scripts/read_cstore.py`, written from
/// docs/FORMAT.md alone), run on bytes as a test would: its exit status, and what it printed.
public enum PythonReader {
    public struct Reading: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Writes `bytes` to `name`.cstore in `dir` and runs the reader at `script` on it.
    public static func read(_ bytes: [UInt8], script: String, in dir: TemporaryDirectory, name: String) throws
        -> Reading
    {
        let path = dir.path + "/" + name + ".cstore"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, path]
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Reading(
            status: p.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}
