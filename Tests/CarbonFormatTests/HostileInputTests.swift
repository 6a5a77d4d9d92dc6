import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonFormat

#if canImport(Glibc)
    import Glibc
#endif

/// Inputs crafted to exhaust memory or time are refused as damaged, quickly and in little memory;
/// the limits of `RecordCodec.Limits` hold for readers and writers alike (docs/FORMAT.md §8).
@Suite struct HostileInputTests {
    static let directory = FuzzRegressionTests.regressionsDirectory

    /// The committed hostile inputs and what a reader with the default limits must say of each.
    static let expected: [(name: String, kind: FormatError.Kind, tag: UInt16, phrase: String)] = [
        ("hostile-zlib-transaction-count", .limitExceeded, 1, "maxDecodedSize"),
        ("hostile-zlib-dictionary-size", .limitExceeded, 4, "maxDecodedSize"),
        ("hostile-zlib-huge-string", .limitExceeded, 2, "maxDecodedSize"),
        ("hostile-zlib-choice-count", .limitExceeded, 2, "maxDecodedSize"),
        ("hostile-zlib-metadata-count", .limitExceeded, 1, "maxDecodedSize"),
        ("hostile-zlib-ratio", .limitExceeded, 1, "maxCompressionRatio"),
        ("hostile-transaction-count-above-minimum-size", .lengthBeyondEnd, 1, "needs at least"),
        ("hostile-metadata-count-above-dictionary", .malformed, 1, "more than the 2 strings"),
        ("hostile-dictionary-above-item-limit", .limitExceeded, 4, "maxItemCount"),
    ]

    static func committed(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: directory.appendingPathComponent(name + ".cstore")))
    }

    /// Rewrites the committed inputs from `HostileInputs`:
    /// `CARBONSTORE_WRITE_HOSTILE_INPUTS=1 swift test --filter HostileInputTests/writeCorpus`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CARBONSTORE_WRITE_HOSTILE_INPUTS"] == "1"))
    func writeCorpus() throws {
        for input in HostileInputs.all {
            try Data(input.bytes).write(to: Self.directory.appendingPathComponent(input.name + ".cstore"))
        }
    }

    @Test func generatorAndExpectationsAgree() {
        let names = HostileInputs.all.map(\.name)
        #expect(names == Self.expected.map(\.name))
        for (input, e) in zip(HostileInputs.all, Self.expected) {
            #expect(
                input.kind == e.kind && input.sectionTag == e.tag && input.phrase == e.phrase, "\(e.name)")
        }
    }

    @Test func theIssuesBombIsCommitted() throws {
        let bomb = try Self.committed("hostile-zlib-transaction-count")
        #expect(bomb.count > 200_000 && bomb.count < 260_000, "\(bomb.count) bytes")
        let (_, sections) = try RecordCodec.layout(of: bomb)
        #expect(sections.count == 1 && sections[0].isCompressed)
        #expect(sections[0].rawLength == HostileInputs.bombSize)
    }

    @Test(arguments: expected.map(\.name))
    func refusedAsDamagedAtOnce(_ name: String) throws {
        let e = try #require(Self.expected.first { $0.name == name })
        let bytes = try Self.committed(name)
        let start = ContinuousClock.now
        let error = Craft.error(bytes)
        let elapsed = ContinuousClock.now - start
        #expect(error?.kind == e.kind, "\(String(describing: error))")
        #expect(error?.sectionTag == e.tag)
        #expect(error?.description.contains(e.phrase) == true, "\(String(describing: error))")
        #expect(elapsed < .seconds(1), "\(elapsed)")
        // The same once every checksum is recomputed (as the fuzzer does).
        #expect(Craft.error(repairingChecksums(bytes))?.kind == e.kind)
    }

    /// GNU time, which reports the peak memory of the process it starts.
    static let gnuTime = "/usr/bin/time"
    static var hasGNUTime: Bool { FileManager.default.isExecutableFile(atPath: gnuTime) }

    /// Runs `carbonstore ARGS` under a 2 GiB address-space limit (as in a small container) and
    /// returns its exit status, peak resident memory in bytes, time and stderr.
    ///
    /// The peak comes from GNU time, a small process that forks the command: `ru_maxrss` of a
    /// process spawned straight from this (large) test process would include the test process's
    /// own peak, because Linux carries the memory image it replaces on `exec` into the count.
    static func measure(_ arguments: [String]) throws -> (
        status: Int32, maxRSS: Int, seconds: Double, stderr: String
    ) {
        let executable = try CommandRunner().executable
        let base = FileManager.default.temporaryDirectory.appendingPathComponent(
            "hostile-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        ).path
        let errPath = base + ".err"
        let rssPath = base + ".rss"
        defer {
            unlink(errPath)
            unlink(rssPath)
        }
        let argv =
            [
                gnuTime, "-f", "%M", "-o", rssPath, "/bin/sh", "-c",
                "ulimit -v 2097152 && exec \"$0\" \"$@\"", executable,
            ]
            + arguments
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var pid: pid_t = 0
        let start = ContinuousClock.now
        let rc = posix_spawn(&pid, gnuTime, &actions, nil, cArgs, environ)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
        let elapsed = ContinuousClock.now - start
        let exit = status & 0x7F == 0 ? (status >> 8) & 0xFF : -(status & 0x7F)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        let report = (try? String(contentsOfFile: rssPath, encoding: .utf8)) ?? ""
        // GNU time writes "Command exited with non-zero status 5" before the figure.
        let kib = report.split(separator: "\n").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return (exit, (kib ?? Int.max / 1024) * 1024, seconds, stderr)
    }

    /// `file inspect` refuses every hostile input with exit code 5, within 100 MB and (even in a
    /// debug build on a loaded machine) a few seconds. Before the limits, the zlib bombs took
    /// 2 to 24 s and up to 4 GB, and crashed under this 2 GiB address-space limit.
    @Test(.enabled(if: hasGNUTime, "needs GNU time (/usr/bin/time) to measure the peak memory of a process"))
    func fileInspectRefusesThemWithin100MB() throws {
        let baseline = try Self.measure(["file", "inspect", Self.corpusSample().path])
        #expect(baseline.status == 0, "\(baseline.stderr)")
        #expect(baseline.maxRSS < 100_000_000, "a valid file: peak \(baseline.maxRSS) bytes")
        for e in Self.expected {
            let path = Self.directory.appendingPathComponent(e.name + ".cstore").path
            let run = try Self.measure(["file", "inspect", path])
            #expect(run.status == 5, "\(e.name): \(run.status) \(run.stderr)")
            #expect(run.stderr.contains("is not a valid user file"), "\(e.name): \(run.stderr)")
            #expect(run.maxRSS < 100_000_000, "\(e.name): peak \(run.maxRSS) bytes")
            #expect(run.seconds < 5, "\(e.name): \(run.seconds) s")
            print(
                "file inspect \(e.name): exit \(run.status), peak RSS \(run.maxRSS / 1024) KiB "
                    + "(a valid file: \(baseline.maxRSS / 1024) KiB), \(run.seconds) s")
        }
    }

    static func corpusSample() -> URL {
        FuzzRegressionTests.corpusDirectory.appendingPathComponent("valid-workload-zlib.cstore")
    }

    /// A file larger than `maxFileSize` is refused before it is read to the end.
    @Test(.enabled(if: hasGNUTime, "needs GNU time (/usr/bin/time)"))
    func fileInspectRefusesAFileAboveTheSizeLimit() throws {
        let dir = try TemporaryDirectory("hostile-size")
        defer { dir.remove() }
        let path = dir.path + "/big.cstore"
        let valid = try Data(contentsOf: Self.corpusSample())
        var big = valid
        big.append(Data(count: RecordCodec.Limits().maxFileSize))
        try big.write(to: URL(fileURLWithPath: path))
        let run = try Self.measure(["file", "inspect", path])
        #expect(run.status == 5, "\(run.stderr)")
        #expect(run.stderr.contains("maxFileSize"), "\(run.stderr)")
        #expect(run.maxRSS < 100_000_000, "peak \(run.maxRSS) bytes")
    }
}

/// The limits themselves, with small values so that ordinary records reach them.
@Suite struct RecordLimitsTests {
    static func codec(
        compression: RecordCodec.Compression = .none, file: Int = 1 << 30, decoded: Int = 1 << 30,
        ratio: Int = 1032
    ) -> RecordCodec {
        RecordCodec(
            options: .init(compression: compression, compressionThreshold: 0),
            limits: .init(maxFileSize: file, maxDecodedSize: decoded, maxCompressionRatio: ratio))
    }

    static func decode(_ bytes: [UInt8], _ codec: RecordCodec) -> Result<UserRecord, FormatError> {
        Result(catching: { () throws(FormatError) -> UserRecord in try codec.decode(bytes) })
    }

    static func error(_ bytes: [UInt8], _ codec: RecordCodec) -> FormatError? {
        if case .failure(let e) = decode(bytes, codec) { return e }
        return nil
    }

    /// The record's items as `maxItemCount` counts them.
    static func itemCount(_ record: UserRecord) throws -> Int {
        do {
            _ = try RecordCodec(limits: .init(maxItemCount: -1)).encodeChecked(record)
        } catch {
            #expect(error.limit == .itemCount)
            return error.size
        }
        Issue.record("no error")
        return 0
    }

    /// Bytes of all section payloads once inflated (what `maxDecodedSize` bounds).
    static func decodedSize(_ bytes: [UInt8]) throws -> Int {
        try RecordCodec.layout(of: bytes).sections.reduce(0) { $0 + $1.rawLength }
    }

    @Test func defaultsAreWellAboveAHeavyUser() throws {
        let limits = RecordCodec.Limits()
        #expect(limits.maxFileSize == 8 << 20)
        #expect(limits.maxDecodedSize == 16 << 20)
        #expect(limits.maxCompressionRatio == 128)
        #expect(limits.maxItemCount == 250_000)
        #expect(RecordCodec().limits == limits)
        let w2 = RecordGenerator.workload(.w2, seed: 1)
        let bytes = try RecordCodec().encodeChecked(w2)
        let items = try Self.itemCount(w2)
        #expect(items > 42_000 && items * 4 < limits.maxItemCount, "\(items) items")
        #expect(bytes.count * 5 < limits.maxFileSize, "\(bytes.count)")
        #expect(try Self.decodedSize(bytes) * 5 < limits.maxDecodedSize)
        #expect(try RecordCodec().decode(bytes) == w2)
    }

    @Test func fileSizeLimit() throws {
        let record = RecordGenerator.record(seed: 3)
        let bytes = RecordCodec().encode(record)
        #expect(try Self.decode(bytes, Self.codec(file: bytes.count)).get() == record)
        let e = Self.error(bytes, Self.codec(file: bytes.count - 1))
        #expect(e?.kind == .limitExceeded)
        #expect(e?.description.contains("maxFileSize") == true, "\(String(describing: e))")
        #expect(e?.description.contains("\(bytes.count) bytes") == true, "\(String(describing: e))")
    }

    @Test func decodedSizeLimitCountsEverySectionPreservedOnesIncluded() throws {
        var record = RecordGenerator.workload(.w1, seed: 4)
        record.preservedSections = [
            PreservedSection(tag: 0x0200, flags: 0, payload: [UInt8](repeating: 7, count: 300))
        ]
        for compression in [RecordCodec.Compression.none, .zlib(level: 6)] {
            let bytes = Self.codec(compression: compression).encode(record)
            let size = try Self.decodedSize(bytes)
            #expect(size > 100_000)
            #expect(try Self.decode(bytes, Self.codec(decoded: size)).get() == record)
            let e = Self.error(bytes, Self.codec(decoded: size - 1))
            #expect(e?.kind == .limitExceeded)
            #expect(e?.description.contains("maxDecodedSize") == true, "\(String(describing: e))")
        }
    }

    @Test func compressionRatioLimitIsCheckedBeforeInflating() throws {
        // 20,000 zero bytes of one text answer: deflate shrinks them about 500 times.
        let payload =
            Craft.varint(1) + Craft.string("q") + [0, 0] + Craft.varint(20_000)
            + [UInt8](repeating: 0, count: 20_000)
        let body = Craft.compressed(payload, level: 9)
        let ratio = Double(payload.count) / Double(body.count - 4)
        #expect(ratio > 100)
        let file = Craft.file([Craft.section(tag: 2, flags: 1, body: body)])
        #expect(throws: Never.self) {
            try Self.decode(file, Self.codec(ratio: Int(ratio.rounded(.up)))).get()
        }
        let e = Self.error(file, Self.codec(ratio: Int(ratio.rounded(.down)) - 1))
        #expect(e?.kind == .limitExceeded)
        #expect(e?.description.contains("maxCompressionRatio") == true, "\(String(describing: e))")
        // A claim deflate could never honour (more than 1032:1) stays a damaged stream.
        #expect(
            Self.error(
                Craft.file([
                    Craft.section(
                        tag: 2, flags: 1,
                        body: Craft.le32(UInt32(1032 * (body.count - 4) + 1)) + body.dropFirst(4))
                ]),
                Self.codec())?.kind == .decompressionFailed)
    }

    @Test func writerStoresRawWhatWouldBreakTheRatio() throws {
        var record = UserRecord(userID: "z", createdAt: .init(millisecondsSince1970: 0))
        record.responses = [
            QuestionResponse(
                questionID: "q", answer: .text(String(repeating: "a", count: 50_000)),
                answeredAt: .init(millisecondsSince1970: 0))
        ]
        let codec = Self.codec(compression: .zlib(level: 9), ratio: 8)
        let bytes = try codec.encodeChecked(record)
        let (_, sections) = try RecordCodec.layout(of: bytes)
        #expect(sections.count == 1 && !sections[0].isCompressed)
        #expect(try codec.decode(bytes) == record)
        // With room for the ratio it compresses.
        let loose = Self.codec(compression: .zlib(level: 9))
        #expect(try RecordCodec.layout(of: loose.encode(record)).sections[0].isCompressed)
    }

    @Test func encodeCheckedRefusesWhatReadersWouldRefuse() throws {
        let record = RecordGenerator.workload(.w1, seed: 6)
        let size = RecordCodec().encode(record).count
        let decoded = try Self.decodedSize(RecordCodec().encode(record))
        let tight = RecordCodec(limits: .init(maxFileSize: size - 1))
        #expect(throws: RecordTooLargeError.self) { try tight.encodeChecked(record) }
        do {
            _ = try tight.encodeChecked(record)
        } catch {
            #expect(error.userID == record.userID)
            #expect(error.limit == .fileSize)
            #expect(error.size == size)
            #expect(error.maximum == size - 1)
            #expect(error.description.contains("maxFileSize"), "\(error)")
            #expect(error.description.contains("\(size) bytes"), "\(error)")
        }
        do {
            _ = try RecordCodec(limits: .init(maxDecodedSize: decoded - 1)).encodeChecked(record)
            Issue.record("no error")
        } catch {
            #expect(error.limit == .decodedSize)
            #expect(error.size == decoded)
            #expect(error.description.contains("maxDecodedSize"), "\(error)")
        }
        #expect(
            try RecordCodec(limits: .init(maxFileSize: size, maxDecodedSize: decoded)).encodeChecked(
                record, fileID: testFileID) == RecordCodec().encode(record, fileID: testFileID))
    }

    @Test func itemCountLimit() throws {
        let record = RecordGenerator.workload(.w1, seed: 8)
        let items = try Self.itemCount(record)
        // Rows, plus dictionary strings, choices and metadata entries.
        #expect(items > record.transactions.count + record.responses.count + record.footprints.count)
        let bytes = RecordCodec().encode(record)
        #expect(try Self.decode(bytes, RecordCodec(limits: .init(maxItemCount: items))).get() == record)
        let e = Self.error(bytes, RecordCodec(limits: .init(maxItemCount: items - 1)))
        #expect(e?.kind == .limitExceeded)
        #expect(e?.description.contains("maxItemCount") == true, "\(String(describing: e))")
        do {
            _ = try RecordCodec(limits: .init(maxItemCount: items - 1)).encodeChecked(record)
            Issue.record("no error")
        } catch {
            #expect(error.limit == .itemCount && error.size == items && error.maximum == items - 1)
            #expect(error.description.contains("hold \(items) items"), "\(error)")
        }
    }

    /// A file that fills `maxFileSize` with the smallest rows, valid up to its last byte, is refused
    /// at its count, before the 838,000 rows are decoded (they would take about 160 MB).
    @Test func smallestRowsUpToTheFileLimitAreRefusedAtTheirCount() throws {
        let n = (RecordCodec.Limits.defaultMaxFileSize - 200) / 10
        let payload =
            Craft.varint(UInt64(n)) + Craft.varint(1) + Craft.string("EUR")
            + [UInt8](repeating: 0, count: 10 * n)
        let file = Craft.file([Craft.section(tag: 1, body: payload)])
        #expect(file.count <= RecordCodec.Limits.defaultMaxFileSize)
        let e = Craft.error(file)
        #expect(e?.kind == .limitExceeded)
        #expect(e?.offset == Craft.headerEnd(file) + 4 + 8)
        #expect(e?.description.contains("maxItemCount") == true, "\(String(describing: e))")
    }

    /// Whatever the limits, a file `encodeChecked` writes is one the same codec reads back.
    @Test func noWrittenFileIsRefusedLater() throws {
        var records = (UInt64(0)..<60).map { RecordGenerator.record(seed: $0) }
        records.append(RecordGenerator.workload(.w1, seed: 7))
        var written = 0
        var refused = 0
        for (i, record) in records.enumerated() {
            for limits in [
                RecordCodec.Limits(maxFileSize: 4_000, maxDecodedSize: 6_000, maxCompressionRatio: 2),
                RecordCodec.Limits(maxFileSize: 100_000, maxDecodedSize: 60_000, maxCompressionRatio: 3),
                RecordCodec.Limits(maxFileSize: 70_000, maxDecodedSize: 200_000, maxCompressionRatio: 1),
                RecordCodec.Limits(maxItemCount: 40),
            ] {
                for compression in [RecordCodec.Compression.none, .zlib(level: 1), .zlib(level: 9)] {
                    let codec = RecordCodec(
                        options: .init(compression: compression, compressionThreshold: 0), limits: limits)
                    do {
                        let bytes = try codec.encodeChecked(record)
                        written += 1
                        let back = Self.decode(bytes, codec)
                        switch back {
                        case .success(let r): #expect(r == record || hasNaNAnswer(record), "record \(i)")
                        case .failure(let e):
                            Issue.record("record \(i), \(limits): written but refused: \(e)")
                        }
                    } catch {
                        refused += 1
                        #expect(error.size > error.maximum)
                    }
                }
            }
        }
        #expect(written > 100 && refused > 10, "written \(written), refused \(refused)")
    }

    /// Counts that fit the bytes left but not that many items of the smallest size are refused
    /// before anything is reserved for them.
    @Test func countsAreCheckedAgainstTheSmallestItem() throws {
        let zeros = [UInt8](repeating: 0, count: 1000)
        let cases: [(what: String, tag: UInt16, payload: [UInt8])] = [
            ("transaction count", 1, Craft.varint(101) + zeros),
            ("response count", 2, Craft.varint(251) + zeros),
            ("choice count", 2, Craft.varint(1) + Craft.string("q") + [0, 3] + Craft.varint(1001) + zeros),
            ("preference count", 3, Craft.varint(334) + zeros),
            ("footprint count", 4, Craft.varint(143) + zeros),
            ("saving count", 5, Craft.varint(143) + zeros),
            ("dictionary size", 4, [0] + Craft.varint(1001) + zeros),
            (
                "metadata entry count", 1,
                Craft.transactionsPayload(
                    dictionary: ["EUR", "k"], metadata: Craft.varint(3) + [1, 1, 1, 1, 1, 1])
            ),
        ]
        for (what, tag, payload) in cases {
            let e = Craft.error(Craft.file([Craft.section(tag: tag, body: payload)]))
            #expect(e?.sectionTag == tag, "\(what)")
            #expect(e?.detail.contains(what) == true, "\(what): \(String(describing: e))")
            #expect(
                e?.detail.contains("needs at least") == true || e?.detail.contains("more than the") == true,
                "\(what): \(String(describing: e))")
        }
        // One fewer fits the smallest size: the count itself is accepted (what follows is checked as usual).
        let fits = Craft.error(Craft.file([Craft.section(tag: 1, body: Craft.varint(100) + zeros)]))
        #expect(fits?.detail.contains("needs at least") == false, "\(String(describing: fits))")
    }
}
