import ArgumentParser
import CarbonStore
import CarbonStoreCLI
import CarbonTorture
import Foundation

struct TortureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torture",
        abstract:
            "History-checking torture test: workers update users under faults; a checker proves nothing was lost.",
        subcommands: [Run.self, Worker.self, Check.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Run workers against the storage with faults, then check every user file against their histories (exit 5 if anything was lost)."
        )
        @OptionGroup var storage: StorageOptions
        @Option(help: "Worker processes.") var workers = 4
        @Option(help: "Users they update.") var users = 3
        @Option(help: "Run length in seconds.") var seconds = 60
        @Option(help: "Faults: kill, kill-in-window, stop (comma-separated).") var faults = "kill,stop"
        @Option(help: "Concurrent updating tasks in each worker process (group commit batches them).")
        var tasks = 1
        @Option(
            help:
                "Workers pause this long (ms) after the append fence and after the append write, so that faults hit there."
        )
        var appendWindowMs = 0
        @Option(
            help:
                "Compaction policy of the workers: FRACTION:BYTES (e.g. 0.05:256 compacts constantly) or 'always'."
        )
        var compaction: String?
        @Option(help: "How long a stopped worker stays stopped, in ms (make it longer than the lease).")
        var stopMs = 3000
        @Option(help: "Where the workers' histories go (default: a new temporary folder).") var logDir:
            String?
        @Flag(
            help: "NEGATIVE CONTROL: workers write without the fence; the checker must report lost updates.")
        var unsafeNoFence = false
        @Flag(help: "Print the report as JSON.") var json = false

        func run() async throws {
            try await runReportingErrors {
                var set = Set<TortureFault>()
                for name in faults.split(separator: ",") where !name.isEmpty {
                    guard let f = TortureFault(rawValue: String(name)) else {
                        throw InvalidRequestError("unknown fault '\(name)'; use kill, kill-in-window, stop")
                    }
                    set.insert(f)
                }
                let dir = logDir ?? NSTemporaryDirectory() + "carbonstore-torture-\(getpid())"
                var config = TortureConfig(
                    executable: selfExecutable(), storageURI: storage.uriText, logDirectory: dir)
                config.workers = workers
                config.users = users
                config.duration = .seconds(seconds)
                config.faults = set
                config.stopFor = .milliseconds(stopMs)
                config.unsafeNoFence = unsafeNoFence
                config.tasksPerWorker = tasks
                config.appendWindow = .milliseconds(appendWindowMs)
                config.environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("AWS_") }
                if let compaction {
                    _ = try TestHooks.compaction(compaction)
                    config.environment["CARBONSTORE_TEST_COMPACTION"] = compaction
                }
                let report = try await TortureCoordinator.run(
                    config, checkWith: try await storage.makeStore())
                print(json ? try RecordJSON.encode(report) : report.description)
                if !report.passed { throw ExitCode(5) }
            }
        }
    }

    struct Worker: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One torture worker (started by 'torture run').", shouldDisplay: false)
        @OptionGroup var storage: StorageOptions
        @Option var worker: String
        @Option var users: Int
        @Option var milliseconds: Int
        @Option var log: String
        @Option var windowFile: String?
        @Option var tasks = 1

        func run() async throws {
            try await runReportingErrors {
                let window = windowFile
                let windowMs =
                    Int64(ProcessInfo.processInfo.environment["CARBONSTORE_TEST_COMMIT_WINDOW_MS"] ?? "") ?? 0
                let appendWindowMs =
                    Int64(ProcessInfo.processInfo.environment["CARBONSTORE_TEST_APPEND_WINDOW_MS"] ?? "") ?? 0
                let store = try await storage.makeStore { options in
                    options.lockWait = .seconds(10)
                    if ProcessInfo.processInfo.environment["CARBONSTORE_TEST_UNSAFE_NO_FENCE"] == "1" {
                        options.unsafeDisableFence = true
                    }
                    // Mark the window between the lease check and the write, so the coordinator
                    // can stop this process exactly there.
                    options.beforeCommit = {
                        if let window { try? "1".write(toFile: window, atomically: false, encoding: .utf8) }
                        if windowMs > 0 { try? await Task.sleep(for: .milliseconds(windowMs)) }
                        if let window { try? "0".write(toFile: window, atomically: false, encoding: .utf8) }
                    }
                    if let window, appendWindowMs > 0 {
                        options.fileIO = AppendWindow.marking(
                            options.fileIO, windowFile: window,
                            pauseMicroseconds: UInt32(appendWindowMs * 1000))
                    }
                }
                let history = try HistoryLog(path: log)
                let (workerID, userCount, runFor) = (worker, users, Duration.milliseconds(milliseconds))
                let taskCount = max(tasks, 1)
                await withTaskGroup(of: Void.self) { group in
                    for t in 0..<taskCount {
                        group.addTask {
                            await TortureWorker.run(
                                store: store, workerID: taskCount == 1 ? workerID : "\(workerID)t\(t)",
                                users: userCount, log: history, duration: runFor)
                        }
                    }
                }
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check user files against the histories in a folder.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "The folder with the workers' histories.") var logDir: String
        @Option(help: "Users the workers updated.") var users = 3

        func run() async throws {
            try await runReportingErrors {
                let report = try await TortureChecker.check(
                    store: try await storage.makeStore(), logDirectory: logDir, users: users)
                print(report.description)
                if !report.passed { throw ExitCode(5) }
            }
        }
    }
}

/// Marks the append window of a torture worker in its window file, so that the coordinator can stop
/// or kill it there: `2` from the moment the fence was checked under the commit lock until the frame
/// is written, `3` from then until its `fdatasync` returned; `0` after. Each window lasts at least
/// `pauseMicroseconds`.
enum AppendWindow {
    static func marking(_ base: FileIO, windowFile: String, pauseMicroseconds: UInt32) -> FileIO {
        let appending = Locked<Set<Int32>>([])
        let mark: @Sendable (String) -> Void = { value in
            try? value.write(toFile: windowFile, atomically: false, encoding: .utf8)
        }
        var io = base
        io.openat = { dir, name, flags, mode in
            let fd = base.openat(dir, name, flags, mode)
            // A user file opened to append to: read and write, not created (a temporary file is),
            // not a folder.
            let isAppend = flags & O_ACCMODE == O_RDWR && flags & (O_CREAT | O_DIRECTORY) == 0
            if fd >= 0 && isAppend { _ = appending.withLock { $0.insert(fd) } }
            return fd
        }
        @Sendable func window(_ write: () -> Int) -> Int {
            mark("2")
            usleep(pauseMicroseconds)
            let n = write()
            mark("3")
            usleep(pauseMicroseconds)
            return n
        }
        io.write = { fd, buffer in
            guard appending.withLock({ $0.contains(fd) }) else { return base.write(fd, buffer) }
            return window { base.write(fd, buffer) }
        }
        io.pwrite = { fd, buffer, offset in
            guard appending.withLock({ $0.contains(fd) }) else { return base.pwrite(fd, buffer, offset) }
            return window { base.pwrite(fd, buffer, offset) }
        }
        io.datasync = { fd in
            let r = base.datasync(fd)
            if appending.withLock({ $0.contains(fd) }) { mark("0") }
            return r
        }
        io.close = { fd in
            let wasAppending = appending.withLock { $0.remove(fd) != nil }
            if wasAppending { mark("0") }
            return base.close(fd)
        }
        return io
    }
}

/// The path of this executable, to start workers.
func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}
