import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

/// docs/FORMAT.md is complete enough to write a reader from it alone: `scripts/read_cstore.py`, written
/// from the document without the Swift sources, reads the files the engine writes to exactly the JSON
/// the engine gives for them (`RecordJSON`), ignores the same torn tails and refuses damaged files
/// with the engine's kind and offset.
@Suite(.serialized) struct IndependentReaderTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let script = repository.appendingPathComponent("scripts/read_cstore.py").path

    typealias Reading = PythonReader.Reading

    /// Runs the Python reader on `bytes` (written to a file in `dir`).
    func read(_ bytes: [UInt8], in dir: TemporaryDirectory, name: String) throws -> Reading {
        try PythonReader.read(bytes, script: Self.script, in: dir, name: name)
    }

    /// The reader prints the engine's JSON of the record the engine decodes, and reports an ignored
    /// tail exactly where the engine finds one.
    func expectSameRecord(
        _ bytes: [UInt8], in dir: TemporaryDirectory, name: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (record, layout) = try RecordCodec().decodeFile(bytes)
        let reading = try read(bytes, in: dir, name: name)
        #expect(reading.status == 0, "\(name): \(reading.stderr)", sourceLocation: sourceLocation)
        #expect(
            reading.stdout == (try RecordJSON.encode(record)) + "\n", "\(name)",
            sourceLocation: sourceLocation)
        if layout.ignoredLength > 0 {
            #expect(
                reading.stderr.contains(
                    "ignored tail of \(layout.ignoredLength) bytes at offset \(layout.validLength)"),
                "\(name): \(reading.stderr)", sourceLocation: sourceLocation)
        } else {
            #expect(reading.stderr.isEmpty, "\(name): \(reading.stderr)", sourceLocation: sourceLocation)
        }
    }

    /// The reader refuses the file with the engine's error kind and offset, on one line, exit 5.
    func expectSameError(
        _ bytes: [UInt8], in dir: TemporaryDirectory, name: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let error = try #require(throws: FormatError.self, sourceLocation: sourceLocation) {
            try RecordCodec().decodeFile(bytes)
        }
        let reading = try read(bytes, in: dir, name: name)
        #expect(reading.status == 5 && reading.stdout.isEmpty, "\(name)", sourceLocation: sourceLocation)
        #expect(
            reading.stderr.hasPrefix("read_cstore: \(error.kind.rawValue) at offset \(error.offset)"),
            "\(name): engine says \(error), reader says \(reading.stderr)", sourceLocation: sourceLocation)
        #expect(reading.stderr.split(separator: "\n").count == 1, "\(name)", sourceLocation: sourceLocation)
    }

    @Test func filesTheToolWritesReadTheSame() throws {
        let dir = try TemporaryDirectory("independent-reader")
        defer { dir.remove() }
        let cli = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        func ok(_ args: [String]) throws {
            let out = try cli.run(args)
            #expect(out.status == 0, "\(args): \(out.stderr)")
        }
        func file(_ user: String) throws -> [UInt8] {
            let path = try #require(dir.allFiles().first { $0.hasSuffix("/" + user + ".cstore") })
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + path)))
        }
        // A new user: one snapshot.
        try ok(["txn", "add", "alice", "--id", "t1", "--amount", "12.50", "--currency", "EUR"])
        let snapshot = try file("alice")
        #expect(try RecordCodec().decodeFile(snapshot).layout.frameCount == 0)
        try expectSameRecord(snapshot, in: dir, name: "snapshot")

        // Updates of every kind: the file goes on with change frames.
        try ok([
            "txn", "add", "alice", "--id", "t2", "--amount", "1000", "--currency", "JPY", "--merchant",
            "Café",
            "--mcc", "5812", "--category", "food", "--account", "acc", "--description", "lunch", "--meta",
            "b=2",
            "--meta", "a=1", "--at", "2026-01-02T00:00:00Z",
        ])
        try ok(["txn", "add", "alice", "--id", "t3", "--amount", "-1.234", "--currency", "BHD"])
        try ok(["answer", "alice", "diet", "vegan"])
        try ok(["answer", "alice", "km", "--", "-12.5"])
        try ok(["answer", "alice", "big", "1e300"])
        try ok(["answer", "alice", "transport", "bus,bike", "--choices"])
        try ok(["answer", "alice", "car", "false"])
        try ok(["pref", "set", "alice", "units", "metric"])
        try ok(["pref", "set", "alice", "lang", "fr"])
        try ok(["pref", "unset", "alice", "units"])
        try ok([
            "footprint", "add", "alice", "--id", "f1", "--kg", "12.345", "--category", "food",
            "--methodology",
            "spend-v3", "--transaction", "t2", "--period-start", "2026-01-01T00:00:00Z", "--period-end",
            "2026-02-01T00:00:00Z",
        ])
        try ok([
            "footprint", "add", "alice", "--id", "f2", "--kg", "-0.000001", "--category", "x",
            "--methodology", "m",
        ])
        try ok([
            "saving", "add", "alice", "--id", "s1", "--action", "bike", "--kg", "3.5", "--money", "4.20",
            "--currency",
            "EUR", "--period-start", "2026-01-01T00:00:00Z", "--period-end", "2026-01-31T00:00:00Z",
        ])
        try ok(["txn", "add", "alice", "--id", "t1", "--amount", "13.50", "--currency", "EUR", "--replace"])
        let withFrames = try file("alice")
        #expect(try RecordCodec().decodeFile(withFrames).layout.frameCount > 10)
        try expectSameRecord(withFrames, in: dir, name: "frames")

        // The same JSON as `carbonstore file inspect`.
        let path = try #require(dir.allFiles().first { $0.hasSuffix("/alice.cstore") })
        let inspect = try cli.run(["file", "inspect", dir.path + "/" + path])
        let reading = try read(withFrames, in: dir, name: "frames-again")
        #expect(inspect.status == 0 && reading.stdout == inspect.stdout)

        // A torn append (the last frame cut short), and garbage after the last frame.
        try expectSameRecord(Array(withFrames.dropLast(5)), in: dir, name: "torn")
        try expectSameRecord(withFrames + Array("\u{89}CFR garbage".utf8), in: dir, name: "garbage")

        // A flipped byte in the snapshot, in the header, and a snapshot cut short: errors.
        var flipped = withFrames
        flipped[snapshot.count - 10] ^= 0x01
        try expectSameError(flipped, in: dir, name: "flipped-section")
        var header = withFrames
        header[30] ^= 0x40
        try expectSameError(header, in: dir, name: "flipped-header")
        try expectSameError(Array(snapshot.dropLast(1)), in: dir, name: "short-snapshot")
    }

    @Test func generatedRecordsAndCompressedSectionsReadTheSame() throws {
        let dir = try TemporaryDirectory("independent-reader-generated")
        defer { dir.remove() }
        let codec = RecordCodec()
        // A large user: its sections are compressed.
        let (big, bigLayout) = try codec.encodeSnapshot(RecordGenerator.workload(.w1), fileID: .random())
        #expect(big.count < 100_000)
        try expectSameRecord(big, in: dir, name: "workload")
        // A change frame on it, then a torn copy of that frame.
        var changed = RecordGenerator.workload(.w1)
        changed.revision += 1
        changed.transactions.removeFirst(3)
        changed.preferences = [:]
        let frame = try #require(
            codec.encodeChange(
                from: RecordGenerator.workload(.w1), to: changed, appendingTo: bigLayout, id: .random()))
        try expectSameRecord(big + frame.bytes, in: dir, name: "workload-frame")
        try expectSameRecord(big + frame.bytes.dropLast(1), in: dir, name: "workload-torn")
        // Records with every kind of value (any Int64 time, NaN and infinite answers, hostile
        // strings, unknown sections), compressed and not.
        for seed in UInt64(1)...40 {
            let record = RecordGenerator.record(seed: seed, maxItems: 30, preservedSections: seed % 3 == 0)
            let options =
                seed % 2 == 0 ? RecordCodec.Options(compression: .none) : .init(compressionThreshold: 64)
            let bytes = RecordCodec(options: options).encode(record)
            try expectSameRecord(bytes, in: dir, name: "record-\(seed)")
            // One damaged byte in each: the engine and the reader agree on the error.
            var damaged = bytes
            damaged[Int(seed * 7919) % bytes.count] ^= 0x20
            try expectSameError(damaged, in: dir, name: "damaged-\(seed)")
        }
    }

    @Test func theWorkedExamplesOfTheDocument() throws {
        let dir = try TemporaryDirectory("independent-reader-examples")
        defer { dir.remove() }
        let eur = CurrencyCode("EUR")!
        let t0 = Timestamp(iso8601: "2026-01-01T00:00:00Z")!
        let t1 = Timestamp(iso8601: "2026-01-01T00:00:01.500Z")!
        let t2 = Timestamp(iso8601: "2026-01-01T00:00:02.500Z")!
        let example = UserRecord(
            userID: "alice", revision: 3, createdAt: t0, updatedAt: t1,
            transactions: [
                Transaction(
                    id: "t1", time: t0, amount: Money(minorUnits: 1250, currency: eur), merchant: "Café",
                    mcc: 5812, category: "food"),
                Transaction(
                    id: "t2", time: t1, amount: Money(minorUnits: -300, currency: eur), merchant: "Café",
                    description: "refund", metadata: ["k": "v"]),
            ],
            responses: [QuestionResponse(questionID: "diet", answer: .boolean(true), answeredAt: t0)],
            preferences: ["units": Preference(value: "metric", updatedAt: t1)])
        let codec = RecordCodec(options: .init(compression: .none))
        // §10, version 1; a version-1 file may not be followed by anything.
        let v1 = codec.encodeVersion1(example)
        #expect(v1.count == 185)
        try expectSameRecord(v1, in: dir, name: "v1")
        try expectSameError(v1 + [0x89, 0x43, 0x46, 0x52], in: dir, name: "v1-trailing")
        // §14, version 2 with one frame, whole and torn.
        var changed = example
        changed.revision = 4
        changed.updatedAt = t2
        changed.transactions.append(
            Transaction(id: "t3", time: t2, amount: Money(minorUnits: 420, currency: eur), merchant: "Café"))
        changed.preferences["units"] = nil
        changed.preferences["lang"] = Preference(value: "fr", updatedAt: t2)
        let (snapshot, layout) = try codec.encodeSnapshot(
            example, fileID: WriteID(hex: "000102030405060708090a0b0c0d0e0f")!)
        let frame = try #require(
            codec.encodeChange(
                from: example, to: changed, appendingTo: layout,
                id: WriteID(hex: "101112131415161718191a1b1c1d1e1f")!))
        #expect(snapshot.count + frame.bytes.count == 335)
        try expectSameRecord(snapshot + frame.bytes, in: dir, name: "v2")
        try expectSameRecord(snapshot + frame.bytes.dropLast(20), in: dir, name: "v2-torn")
    }

    @Test func theFuzzCorpusReadsTheSame() throws {
        let dir = try TemporaryDirectory("independent-reader-corpus")
        defer { dir.remove() }
        let corpus = Self.repository.appendingPathComponent("Fuzz/corpus")
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted()
        #expect(names.filter { $0.hasPrefix("valid-") }.count >= 10)
        for name in names where name.hasSuffix(".cstore") {
            let bytes = [UInt8](try Data(contentsOf: corpus.appendingPathComponent(name)))
            if name.hasPrefix("valid-") {
                try expectSameRecord(bytes, in: dir, name: name)
            } else {
                try expectSameError(bytes, in: dir, name: name)
            }
        }
    }
}
