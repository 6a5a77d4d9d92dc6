import CarbonStore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The faults a coordinator injects into worker processes.
public enum TortureFault: String, Sendable, Codable, CaseIterable {
    /// SIGKILL a random worker now and then, and start a new one in its place.
    case kill
    /// SIGSTOP a worker for longer than the lock lease, then SIGCONT it: preferably one that is
    /// between its lease check and its conditional write (the worst moment), or inside its append
    /// window (`TortureConfig.appendWindow`), else a random one.
    case stop
    /// SIGKILL a worker inside one of its windows (waiting up to a second for one), and start a
    /// new one in its place: between its lease check and its write, between the append fence and
    /// the append write, or between the append write and its fdatasync.
    case killInWindow = "kill-in-window"
}

/// How a torture run goes.
public struct TortureConfig: Sendable {
    /// The `carbonstore` executable that runs the workers.
    public var executable: String
    public var storageURI: String
    public var workers = 4
    public var users = 3
    public var duration: Duration = .seconds(60)
    public var faults: Set<TortureFault> = []
    public var killEvery: Duration = .seconds(2)
    public var stopEvery: Duration = .seconds(3)
    /// How long a stopped worker stays stopped; make it longer than the lease.
    public var stopFor: Duration = .seconds(3)
    /// Workers sleep this long between their lease check and their write, widening the window.
    public var commitWindow: Duration = .milliseconds(20)
    /// Workers sleep this long after the append fence and again after the append write (before the
    /// fdatasync), and mark both windows for `stop` and `killInWindow`; zero: no such windows.
    public var appendWindow: Duration = .zero
    /// Concurrent updating tasks in each worker process (their updates are group-committed).
    public var tasksPerWorker = 1
    /// TEST ONLY: workers write without the fence (a negative control).
    public var unsafeNoFence = false
    /// Extra environment for the workers (AWS credentials, ...).
    public var environment: [String: String] = [:]
    public var logDirectory: String
    public var label = ""
    /// Whether the checker also lists the storage for users no worker touched.
    public var checkListsStorage = true

    public init(executable: String, storageURI: String, logDirectory: String) {
        self.executable = executable
        self.storageURI = storageURI
        self.logDirectory = logDirectory
    }
}

/// Runs worker processes against one store, injects faults, then checks the result.
public enum TortureCoordinator {
    public static func run(_ config: TortureConfig, checkWith store: Store) async throws -> TortureReport {
        try FileManager.default.createDirectory(
            atPath: config.logDirectory, withIntermediateDirectories: true)
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + config.duration
        var faults: [String: Int] = [:]
        var workers: [String: Process] = [:]
        var generation = 0

        func launch(_ slot: Int) throws {
            generation += 1
            let id = "w\(slot)g\(generation)"
            let remaining = max(end - clock.now, .milliseconds(100))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: config.executable)
            p.arguments = [
                "torture", "worker", "--storage", config.storageURI, "--worker", id, "--users",
                String(config.users),
                "--milliseconds",
                String(
                    remaining.components.seconds * 1000 + remaining.components.attoseconds
                        / 1_000_000_000_000_000),
                "--log", config.logDirectory + "/\(id).log", "--window-file",
                config.logDirectory + "/\(id).window", "--tasks", String(config.tasksPerWorker),
            ]
            var env = ProcessInfo.processInfo.environment.filter {
                !$0.key.hasPrefix("CARBONSTORE_") && !$0.key.hasPrefix("AWS_")
            }
            env.merge(config.environment) { $1 }
            env["CARBONSTORE_TEST_COMMIT_WINDOW_MS"] = String(
                config.commitWindow.components.seconds * 1000 + config.commitWindow.components.attoseconds
                    / 1_000_000_000_000_000)
            if config.unsafeNoFence { env["CARBONSTORE_TEST_UNSAFE_NO_FENCE"] = "1" }
            if config.appendWindow > .zero {
                env["CARBONSTORE_TEST_APPEND_WINDOW_MS"] = String(
                    config.appendWindow.components.seconds * 1000 + config.appendWindow.components.attoseconds
                        / 1_000_000_000_000_000)
            }
            p.environment = env
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            p.standardInput = FileHandle.nullDevice
            try p.run()
            workers[id] = p
        }

        for slot in 0..<config.workers { try launch(slot) }

        /// The window a worker marks itself in: 1 commit, 2 append fence checked, 3 frame written.
        func window(_ id: String) -> String? {
            let text = try? String(contentsOfFile: config.logDirectory + "/\(id).window", encoding: .utf8)
            return text == "1" || text == "2" || text == "3" ? text : nil
        }
        let windowNames = ["1": "commit-window", "2": "append-window", "3": "before-datasync"]
        // With append windows configured, faults in a window take turns waiting for a worker in
        // an append window (2 or 3) and for one in a commit window (1), so that both kinds are hit
        // whatever share of the time each takes; without them, any window.
        var windowFaults = 0
        func preferredWindows() -> Set<String> {
            windowFaults += 1
            guard config.appendWindow > .zero else { return ["1", "2", "3"] }
            return windowFaults % 2 == 1 ? ["2", "3"] : ["1"]
        }
        /// A running worker inside one of the `preferred` windows (each worker's window read once:
        /// it may leave it between two reads), waiting up to a second; then any window.
        func workerInWindow(_ preferred: Set<String>) async throws -> (String, Process, String)? {
            let look = clock.now + .seconds(1)
            while true {
                let last = clock.now >= look
                for (id, p) in workers where p.isRunning {
                    if let w = window(id), last || preferred.contains(w) { return (id, p, w) }
                }
                if last { return nil }
                try await Task.sleep(for: .milliseconds(1))
            }
        }

        var nextKill = start + config.killEvery
        var nextStop = start + config.stopEvery
        var nextWindowKill = start + config.killEvery
        while clock.now < end {
            try await Task.sleep(for: .milliseconds(5))
            if config.faults.contains(.kill), clock.now >= nextKill,
                let (id, p) = workers.filter({ $0.value.isRunning }).randomElement()
            {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                workers[id] = nil
                faults["kill", default: 0] += 1
                if clock.now < end - .milliseconds(500) {
                    try launch(Int(id.dropFirst().prefix { $0 != "g" }) ?? 0)
                }
                nextKill = clock.now + jittered(config.killEvery)
            }
            if config.faults.contains(.killInWindow), clock.now >= nextWindowKill {
                if let (id, p, w) = try await workerInWindow(preferredWindows()) {
                    kill(p.processIdentifier, SIGKILL)
                    p.waitUntilExit()
                    workers[id] = nil
                    faults["kill-in-\(windowNames[w] ?? w)", default: 0] += 1
                    if clock.now < end - .milliseconds(500) {
                        try launch(Int(id.dropFirst().prefix { $0 != "g" }) ?? 0)
                    }
                }
                nextWindowKill = clock.now + jittered(config.killEvery)
            }
            if config.faults.contains(.stop), clock.now >= nextStop, clock.now + config.stopFor < end {
                // Prefer a worker inside a window; wait up to a second for one.
                let found = try await workerInWindow(preferredWindows())
                var target = found.map { ($0.0, $0.1) }
                let inWindow = found?.2
                if target == nil {
                    target = workers.filter { $0.value.isRunning }.randomElement().map { ($0.key, $0.value) }
                }
                if let (_, p) = target {
                    kill(p.processIdentifier, SIGSTOP)
                    let name = inWindow.map { "stop-in-" + (windowNames[$0] ?? $0) } ?? "stop-random"
                    faults[name, default: 0] += 1
                    try await Task.sleep(for: config.stopFor)
                    kill(p.processIdentifier, SIGCONT)
                }
                nextStop = clock.now + jittered(config.stopEvery)
            }
        }
        // Workers end by themselves at the deadline; a straggler gets a grace period.
        let grace = clock.now + .seconds(60)
        for (_, p) in workers {
            kill(p.processIdentifier, SIGCONT)
            while p.isRunning && clock.now < grace { try await Task.sleep(for: .milliseconds(20)) }
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                faults["straggler-killed", default: 0] += 1
            }
            p.waitUntilExit()
        }
        var report = try await TortureChecker.check(
            store: store, logDirectory: config.logDirectory, users: config.users,
            listStorage: config.checkListsStorage)
        report.label = config.label.isEmpty ? config.storageURI : config.label
        report.seconds = Double((clock.now - start).components.seconds)
        report.workers = config.workers
        report.faults = faults
        return report
    }

    static func jittered(_ d: Duration) -> Duration {
        d * Double.random(in: 0.5...1.5)
    }
}
