import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs the `carbonstore` executable built beside the tests, as a separate process.
public struct CommandRunner: Sendable {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public let executable: String
    public var environment: [String: String]

    /// Which program to run.
    public enum Tool: String, Sendable {
        /// The shipped `carbonstore`.
        case carbonstore
        /// `carbonstore-testhost`: the same commands with the reliability tests' hooks
        /// (CARBONSTORE_TEST_*), and the torture commands.
        case testHost = "carbonstore-testhost"
    }

    /// Finds the tool next to the test binary (SwiftPM builds it there when a test target depends
    /// on it), or `carbonstore` at `$CARBONSTORE_BIN`.
    public init(_ tool: Tool = .carbonstore, environment: [String: String] = [:]) throws {
        let env = ProcessInfo.processInfo.environment
        if tool == .carbonstore, let bin = env["CARBONSTORE_BIN"] {
            executable = bin
        } else {
            var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            // On macOS the test binary sits inside a bundle: .../debug/X.xctest/Contents/MacOS/X
            for _ in 0..<4
            where !FileManager.default.isExecutableFile(
                atPath: dir.appendingPathComponent(tool.rawValue).path)
            {
                dir = dir.deletingLastPathComponent()
            }
            executable = dir.appendingPathComponent(tool.rawValue).path
        }
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: executable])
        }
        var base = env.filter {
            !$0.key.hasPrefix("AWS_") && !$0.key.hasPrefix("CARBONSTORE_") && $0.key != "COGO_STORAGE"
        }
        base.removeValue(forKey: "CARBONSTORE_STORAGE")
        self.environment = base.merging(environment) { $1 }
    }

    /// Starts the command (in `directory`, if given) and returns the running process; read its
    /// output with `finish`, or as it comes.
    public func start(_ arguments: [String], directory: String? = nil) throws -> Running {
        try Running(
            executable: executable, arguments: arguments, environment: environment, directory: directory)
    }

    public func run(_ arguments: [String]) throws -> Output {
        try start(arguments).finish()
    }

    /// A started process whose output is collected as it comes.
    public final class Running: Sendable {
        public let pid: Int32
        private let process: Locked<Process?>
        private let stdoutBuffer = OutputBuffer()
        private let stderrBuffer = OutputBuffer()
        private let readers = DispatchGroup()

        init(executable: String, arguments: [String], environment: [String: String], directory: String?)
            throws
        {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = arguments
            p.environment = environment
            if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
            let out = Pipe()
            let err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = FileHandle.nullDevice
            try p.run()
            pid = p.processIdentifier
            process = Locked(p)
            for (handle, buffer) in [
                (out.fileHandleForReading, stdoutBuffer), (err.fileHandleForReading, stderrBuffer),
            ] {
                nonisolated(unsafe) let handle = handle
                readers.enter()
                Thread.detachNewThread { [readers] in
                    while true {
                        let chunk = handle.availableData
                        if chunk.isEmpty { break }
                        buffer.data.withLock { $0.append(chunk) }
                    }
                    readers.leave()
                }
            }
        }

        /// What the process wrote to stdout so far.
        public var stdoutSoFar: String { stdoutBuffer.data.withLock { String(decoding: $0, as: UTF8.self) } }

        /// How the process ended; nil while it runs.
        public var termination: Termination? {
            process.withLock { p in
                guard let p, !p.isRunning else { return nil }
                return p.terminationReason == .exit
                    ? .exit(p.terminationStatus) : .signal(p.terminationStatus)
            }
        }

        /// Sends `signal` if the process still runs.
        public func signal(_ signal: Int32) {
            if termination == nil { _ = kill(pid, signal) }
        }

        /// Waits for the process to end; nil if it still runs after `timeout`.
        public func waitForExit(timeout: Duration) -> Termination? {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let t = termination { return t }
                Thread.sleep(forTimeInterval: 0.01)
            }
            return termination
        }

        /// Kills the process if it still runs, and waits for it to end (for every exit path of a
        /// test).
        public func stop() {
            guard termination == nil else { return }
            _ = kill(pid, SIGKILL)
            _ = waitForExit(timeout: .seconds(10))
        }

        /// What the process wrote to stderr so far.
        public var stderrSoFar: String { stderrBuffer.data.withLock { String(decoding: $0, as: UTF8.self) } }

        /// Waits until stderr contains `text`; throws if the process ends or time runs out first.
        public func waitForStderr(containing text: String, timeout: Duration) throws {
            let deadline = ContinuousClock.now + timeout
            while !stderrSoFar.contains(text) {
                let running = process.withLock { $0?.isRunning ?? false }
                guard running, ContinuousClock.now < deadline else {
                    throw CocoaError(
                        .executableLoad,
                        userInfo: [
                            NSLocalizedDescriptionKey:
                                "process \(pid) did not print '\(text)'; stderr: \(stderrSoFar)"
                        ])
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
        }

        /// Waits for exit and returns everything it printed.
        public func finish() -> Output {
            readers.wait()
            let status = process.withLock { p -> Int32 in
                p?.waitUntilExit()
                return p?.terminationStatus ?? -1
            }
            return Output(
                status: status, stdout: stdoutBuffer.data.withLock { String(decoding: $0, as: UTF8.self) },
                stderr: stderrSoFar)
        }
    }
}

/// How a process ended.
public enum Termination: Equatable, Sendable, CustomStringConvertible {
    case exit(Int32)
    case signal(Int32)

    public var description: String {
        switch self {
        case .exit(let s): "exit status \(s)"
        case .signal(let s): "killed by signal \(s)"
        }
    }
}

final class OutputBuffer: Sendable {
    let data = Locked(Data())
}

/// Quotes a string for /bin/sh.
public func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// Starts `/bin/sh -c script`; its stderr goes to the test's stderr.
public func runShell(_ script: String, environment: [String: String]) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    p.environment = environment
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.standardError
    try p.run()
    return p
}
