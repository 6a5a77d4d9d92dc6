import Foundation

/// Runs the `carbonstore` executable built beside the tests, as a separate process.
public struct CommandRunner: Sendable {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public let executable: String
    public var environment: [String: String]

    /// Finds `carbonstore` next to the test binary (SwiftPM builds it there when a test target
    /// depends on it), or at `$CARBONSTORE_BIN`.
    public init(environment: [String: String] = [:]) throws {
        let env = ProcessInfo.processInfo.environment
        if let bin = env["CARBONSTORE_BIN"] {
            executable = bin
        } else {
            var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            // On macOS the test binary sits inside a bundle: .../debug/X.xctest/Contents/MacOS/X
            for _ in 0..<4
            where !FileManager.default.isExecutableFile(
                atPath: dir.appendingPathComponent("carbonstore").path)
            {
                dir = dir.deletingLastPathComponent()
            }
            executable = dir.appendingPathComponent("carbonstore").path
        }
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: executable])
        }
        var base = env
        base.removeValue(forKey: "CARBONSTORE_STORAGE")
        self.environment = base.merging(environment) { $1 }
    }

    /// Starts the command and returns the running process; read its output with `finish`.
    public func start(_ arguments: [String]) throws -> Running {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = environment
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return Running(process: p, out: out, err: err)
    }

    public func run(_ arguments: [String]) throws -> Output {
        try start(arguments).finish()
    }

    public final class Running: @unchecked Sendable {
        public let process: Process
        let out: Pipe
        let err: Pipe

        init(process: Process, out: Pipe, err: Pipe) {
            self.process = process
            self.out = out
            self.err = err
        }

        public var pid: Int32 { process.processIdentifier }

        /// Waits for exit, draining both pipes so a chatty child never blocks.
        public func finish() -> Output {
            let group = DispatchGroup()
            nonisolated(unsafe) var stdoutData = Data()
            nonisolated(unsafe) var stderrData = Data()
            DispatchQueue.global().async(group: group) {
                stdoutData = self.out.fileHandleForReading.readDataToEndOfFile()
            }
            DispatchQueue.global().async(group: group) {
                stderrData = self.err.fileHandleForReading.readDataToEndOfFile()
            }
            group.wait()
            process.waitUntilExit()
            return Output(
                status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
                stderr: String(decoding: stderrData, as: UTF8.self))
        }
    }
}
