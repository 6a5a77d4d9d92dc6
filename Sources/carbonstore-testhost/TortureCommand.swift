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
        @Option(help: "Faults: kill, stop (comma-separated).") var faults = "kill,stop"
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
                        throw InvalidRequestError("unknown fault '\(name)'; use kill, stop")
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
                config.environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("AWS_") }
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

        func run() async throws {
            try await runReportingErrors {
                let window = windowFile
                let windowMs =
                    Int64(ProcessInfo.processInfo.environment["CARBONSTORE_TEST_COMMIT_WINDOW_MS"] ?? "") ?? 0
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
                }
                await TortureWorker.run(
                    store: store, workerID: worker, users: users, log: try HistoryLog(path: log),
                    duration: .milliseconds(milliseconds))
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

/// The path of this executable, to start workers.
func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}
