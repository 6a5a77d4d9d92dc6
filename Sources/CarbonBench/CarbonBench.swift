import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Measures the format and the engine on the reference workloads (docs/ARCHITECTURE.md section 6),
/// each figure beside its baseline from the same run: Foundation's JSON coders, and the raw durable
/// write of the same bytes. Run it in release mode:
///
///     swift run -c release CarbonBench [--iterations N] [--dir PATH]
///
/// For the HTTP benchmark (scripts/bench-http.sh): `--only seed --storage URI --users N --prefix P`
/// gives N users the W1 workload; `--only update-rate --users N --concurrency C --seconds S` prints
/// the rate of `Store.update` on N seeded users and on one hot user, C writers at a time.
@main
struct CarbonBench {
    static func main() async throws {
        var iterations = 200
        var dir = FileManager.default.currentDirectoryPath + "/.bench-data-\(getpid())"
        var only: String?
        var users = 1000
        var concurrency = 16
        var seconds = 20
        var storage: String?
        var prefix = "w1-"
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            switch a {
            case "--iterations": iterations = Int(args.popFirst() ?? "") ?? iterations
            case "--dir": dir = args.popFirst() ?? dir
            case "--only": only = args.popFirst()
            case "--users": users = Int(args.popFirst() ?? "") ?? users
            case "--concurrency": concurrency = Int(args.popFirst() ?? "") ?? concurrency
            case "--seconds": seconds = Int(args.popFirst() ?? "") ?? seconds
            case "--storage": storage = args.popFirst()
            case "--prefix": prefix = args.popFirst() ?? prefix
            default:
                print(
                    "usage: CarbonBench [--iterations N] [--dir PATH] [--only codec|update|aws|update-rate|seed]"
                        + " [--users N] [--concurrency N] [--seconds N] [--storage URI] [--prefix P]")
                exit(64)
            }
        }
        if only == "aws" {
            try await AWSRequestCount.run(updates: max(iterations, 40))
            return
        }
        if only == "seed" {
            guard let storage else {
                print("--only seed needs --storage URI")
                exit(64)
            }
            let store = try await StoreFactory().makeStore(storage)
            try await UpdateRate.seed(store, prefix: prefix, users: users)
            print("seeded \(users) W1 users \(prefix)00000... in \(storage)")
            return
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        if only == "update-rate" {
            print("- machine: \(machineDescription())")
            print("- data directory: \(dir) (\(filesystemType(dir)))")
            print()
            try await UpdateRate.run(dir: dir, users: users, concurrency: concurrency, seconds: seconds)
            return
        }

        print("# CarbonStore benchmark")
        print()
        print("- machine: \(machineDescription())")
        print("- data directory: \(dir) (\(filesystemType(dir)))")
        print(
            "- iterations: \(iterations) per codec figure, \(max(iterations / 4, 20)) per durable write; times are medians (p90 in brackets)"
        )
        print()

        for (name, workload) in [("W1", RecordGenerator.Workload.w1), ("W2", .w2)] where only != "update" {
            let record = RecordGenerator.workload(workload, seed: 7)
            try codecTable(name, record, iterations: name == "W1" ? iterations : max(iterations / 10, 10))
        }
        if only != "codec" { try await updateTable(dir: dir, iterations: max(iterations / 4, 20)) }
    }

    static func codecTable(_ name: String, _ record: UserRecord, iterations: Int) throws {
        let compressed = RecordCodec()
        let raw = RecordCodec(options: .init(compression: .none))
        let jsonEncoder = JSONEncoder()
        let jsonDecoder = JSONDecoder()
        let json = try jsonEncoder.encode(record)
        let zBytes = compressed.encode(record)
        let rBytes = raw.encode(record)
        let zBack = try compressed.decode(zBytes)
        let rBack = try raw.decode(rBytes)
        precondition(zBack == record && rBack == record, "round trip failed")

        print(
            "## \(name): \(record.transactions.count) transactions, \(record.footprints.count) footprints, \(record.savings.count) savings, \(record.responses.count) responses, \(record.preferences.count) preferences"
        )
        print()
        print("| what | size (bytes) | vs JSON | encode | decode |")
        print("| --- | ---: | ---: | ---: | ---: |")
        let jEnc = measure(iterations) { _ = try! jsonEncoder.encode(record) }
        let jDec = measure(iterations) { _ = try! jsonDecoder.decode(UserRecord.self, from: json) }
        print(
            "| compact JSON (Foundation JSONEncoder/JSONDecoder), baseline | \(json.count) | 100% | \(jEnc) | \(jDec) |"
        )
        for (label, codec, bytes) in [
            ("CarbonStore format, zlib sections", compressed, zBytes),
            ("CarbonStore format, uncompressed", raw, rBytes),
        ] {
            let enc = measure(iterations) { _ = codec.encode(record) }
            let dec = measure(iterations) { _ = try! codec.decode(bytes) }
            let pct = String(format: "%.1f%%", Double(bytes.count) * 100 / Double(json.count))
            print("| \(label) | \(bytes.count) | \(pct) | \(enc) | \(dec) |")
        }
        print()
    }

    static func updateTable(dir: String, iterations: Int) async throws {
        let store = try await StoreFactory().makeStore("path:" + dir + "/store")
        let user = "bench-user"
        let base = RecordGenerator.workload(.w1, seed: 7)
        try await store.update(user) { r in
            r.transactions = base.transactions
            r.responses = base.responses
            r.preferences = base.preferences
            r.footprints = base.footprints
            r.savings = base.savings
        }
        let eur = CurrencyCode("EUR")!
        let rawDir = dir + "/raw"
        try FileManager.default.createDirectory(atPath: rawDir, withIntermediateDirectories: true)
        // The three writes take turns, so a disk whose fsync latency drifts affects all alike.
        var samples: [[Duration]] = [[], [], [], []]
        let clock = ContinuousClock()
        for n in 0...iterations {
            let t = Transaction(
                id: "bench-\(n)", time: Timestamp(millisecondsSince1970: 1_800_000_000_000 + Int64(n)),
                amount: Money(minorUnits: 1234, currency: eur), merchant: "Bench Merchant", mcc: 5411)
            var start = clock.now
            let result = try await store.update(user) { try $0.upsert(t) }
            let update = clock.now - start
            let bytes = RecordCodec().encode(result.record)
            let raw = clock.measure { RawDurableWrite.replace(bytes, in: rawDir, fsyncDirectory: false) }
            let rawDir = clock.measure { RawDurableWrite.replace(bytes, in: rawDir, fsyncDirectory: true) }
            start = clock.now
            _ = try await store.get(user)
            let read = clock.now - start
            if n > 0 {  // the first round warms up
                samples[0].append(raw)
                samples[1].append(rawDir)
                samples[2].append(update)
                samples[3].append(read)
            }
        }
        let size = RecordCodec().encode(try await store.get(user)).count
        let (rawWrite, rawWriteDir, update, read) = (
            summarize(samples[0]), summarize(samples[1]), summarize(samples[2]), summarize(samples[3])
        )

        print("## Durable update of a W1 user (append one transaction), path: with locking=local")
        print()
        print("| what | time |")
        print("| --- | ---: |")
        print(
            "| raw write of the same bytes (\(size) at the end): temp file, write, fsync, rename (baseline) | \(rawWrite) |"
        )
        print("| raw write as above plus fsync of the directory | \(rawWriteDir) |")
        print(
            "| `Store.update`: lock, read, decode, append, encode, temp file, fsync, fenced rename, fsync directory, unlock | \(update) |"
        )
        print("| `Store.read` of the same user (no lock) | \(read) |")
        print()
    }

    static func measure(_ iterations: Int, _ body: () -> Void) -> String {
        body()  // warm up
        let clock = ContinuousClock()
        var samples: [Duration] = []
        samples.reserveCapacity(iterations)
        for _ in 0..<iterations { samples.append(clock.measure(body)) }
        return summarize(samples)
    }

    static func measureAsync(_ iterations: Int, _ body: () async -> Void) async -> String {
        await body()
        let clock = ContinuousClock()
        var samples: [Duration] = []
        for _ in 0..<iterations {
            let start = clock.now
            await body()
            samples.append(clock.now - start)
        }
        return summarize(samples)
    }

    static func summarize(_ samples: [Duration]) -> String {
        let sorted = samples.sorted()
        let median = sorted[sorted.count / 2]
        let p90 = sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
        return "\(format(median)) (\(format(p90)))"
    }

    static func format(_ d: Duration) -> String {
        let us = Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12
        return us >= 1000 ? String(format: "%.2f ms", us / 1000) : String(format: "%.0f µs", us)
    }

    static func machineDescription() -> String {
        let cpu =
            (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        let mem = ProcessInfo.processInfo.physicalMemory / (1 << 30)
        return
            "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(mem) GiB, \(ProcessInfo.processInfo.operatingSystemVersionString)"
    }

    /// The type of the file system holding `path`, from the longest matching mount point.
    static func filesystemType(_ path: String) -> String {
        guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else {
            return "unknown"
        }
        var best = ("", "unknown")
        for line in mounts.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3 else { continue }
            let point = String(f[1])
            let inside = path == point || path.hasPrefix(point == "/" ? "/" : point + "/")
            if inside && point.count >= best.0.count { best = (point, String(f[2])) }
        }
        return "\(best.1) mounted at \(best.0)"
    }
}
