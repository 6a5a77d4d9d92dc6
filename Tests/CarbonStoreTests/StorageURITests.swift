import CarbonModel
import CarbonStore
import Foundation
import Testing

@Suite struct StorageURITests {
    @Test func seedForms() throws {
        let s3 = try StorageURI("s3:my-bucket?locking=dynamo&table=locks")
        #expect(s3.backend == .s3(bucket: "my-bucket"))
        #expect(s3.locking == .dynamo(table: "locks"))

        let efs = try StorageURI("path:///mnt/efs/users?locking=dynamo&table=locks")
        #expect(efs.backend == .path("/mnt/efs/users"))
        #expect(efs.locking == .dynamo(table: "locks"))
    }

    static let backendCases: [(String, StorageURI.Backend)] = [
        ("path:/var/lib/carbonstore", StorageURI.Backend.path("/var/lib/carbonstore")),
        ("path:carbonstore-data", .path("carbonstore-data")),
        ("path:data/users", .path("data/users")),
        ("path:///data", .path("/data")),
        ("path:/dir%20with%20space", .path("/dir with space")),
        ("path:/dir with space", .path("/dir with space")),
        ("path:trailing%20", .path("trailing ")),
        ("path:/a%23b", .path("/a#b")),
        ("memory:", .memory),
        ("s3://my-bucket", .s3(bucket: "my-bucket")),
    ]

    @Test(arguments: backendCases)
    func backends(text: String, backend: StorageURI.Backend) throws {
        let uri = try StorageURI(text.hasPrefix("s3") ? text + "?locking=none" : text)
        #expect(uri.backend == backend)
    }

    @Test func defaultsAndOptions() throws {
        #expect(try StorageURI(StorageURI.defaultURI).locking == .local)
        #expect(try StorageURI("memory:").locking == .local)
        #expect(try StorageURI("path:/d?locking=none").locking == .none)
        let full = try StorageURI(
            "s3:b-1.x?locking=dynamo&table=t_1&region=eu-west-1&endpoint=http://127.0.0.1:5000&prefix=/users/eu&lease=15000&wait=2500"
        )
        #expect(full.region == "eu-west-1")
        #expect(full.endpoint == "http://127.0.0.1:5000")
        #expect(full.prefix == "users/eu/")
        #expect(full.leaseMilliseconds == 15000)
        #expect(full.waitMilliseconds == 2500)
        let slashed = try StorageURI("s3://bucket/a/b?locking=none")
        #expect(slashed.prefix == "a/b/")
    }

    static let rejectionCases: [(String, String)] = [
        ("carbonstore-data", "starts with 'path:', 's3:' or 'memory:'"),
        ("file:///tmp/x", "unknown scheme 'file'"),
        ("path://host/dir", "names a host"),
        // A NUL byte is refused after percent-decoding, wherever it is.
        ("path:/tmp/a%00b", "the path contains a NUL byte (%00)"),
        // Characters that would name a directory nobody meant.
        ("path:x ", "begins or ends with white space"),
        (" path:x", "unknown scheme ' path'"),
        ("path: /data", "begins or ends with white space"),
        ("path:data\t", "begins or ends with white space"),
        ("path:p\u{01}q", "the path contains a control character"),
        ("path:p%7Fq", "the path contains a control character"),
        ("path:data45#frag", "would start a fragment; write %23"),
        ("s3:my-bucket?locking=none&prefix=a#b", "would start a fragment; write %23"),
        (
            "s3:my-bucket?locking=none&prefix=" + String(repeating: "p", count: 201),
            "is 201 bytes; a prefix is at most 200 bytes"
        ),
        ("path:p%C2%85q", "the path contains a control character"),
        ("s3:my-bucket?locking=none&prefix=a%C2%9Fb", "must not contain control characters"),
        ("path:/tmp/x?prefix=a%00b", "the value of 'prefix' contains a NUL byte (%00)"),
        ("s3:my-bucket?locking=dynamo&table=lo%00cks", "the value of 'table' contains a NUL byte (%00)"),
        ("path:/tmp/x?mode=0666", "would let every local user change user files"),
        ("memory:?mode=0640", "'mode' is only used with path:"),
        ("s3:my-bucket?locking=none&io=threads", "'io' is only used with path:"),
        ("memory:?io=task", "'io' is only used with path:"),
        (
            "path:/tmp/x?io=pool",
            "'io' is auto (the default: threads of their own on a file system not known to be local"
        ),
        ("path:/tmp/x?io=Threads", "'io' is auto"),
        ("path:/tmp/a%+1b", "malformed %-escape"),
        ("path:/tmp/x?mode=+600", "must be octal file permissions"),
        ("path:/tmp/x?mode=0700", "must not make user files executable"),
        ("path:/tmp/x?prefix=a%0Ab", "must not contain control characters"),
        ("path:", "the path is empty"),
        ("s3:my-bucket", "s3: needs 'locking'"),
        ("s3:my-bucket?locking=local", "locking=local cannot serialise writers on S3"),
        ("s3:My_Bucket?locking=none", "may hold only lower-case letters"),
        ("s3:ab?locking=none", "3 to 63 characters"),
        ("s3:my..bucket?locking=none", "must not hold two periods in a row"),
        ("s3:192.168.1.1?locking=none", "must not be formatted as an IP address"),
        ("s3:xn--abc?locking=none", "must not begin with 'xn--'"),
        ("s3:sthree-data?locking=none", "must not begin with 'sthree-'"),
        ("s3:bucket-s3alias?locking=none", "must not end with '-s3alias'"),
        ("s3:bucket--ol-s3?locking=none", "must not end with '--ol-s3'"),
        ("s3:bucket.mrap?locking=none", "must not end with '.mrap'"),
        ("s3:bucket--x-s3?locking=none", "must not end with '--x-s3'"),
        ("path:/d?locking=dynamo", "locking=dynamo needs 'table'"),
        ("path:/d?locking=redis", "unknown locking 'redis'"),
        ("path:/d?table=locks", "'table' is only used with locking=dynamo"),
        ("path:/d?colour=blue", "unknown key 'colour'"),
        ("path:/d?wait=1&wait=2", "'wait' is given twice"),
        ("path:/d?wait", "has no value"),
        ("path:/d?wait=soon", "whole number of milliseconds"),
        ("path:/d?locking=dynamo&table=t11&lease=10", "whole number of milliseconds from 1000"),
        ("path:/d?region=eu-west-1", "'region' is only used with s3: or locking=dynamo"),
        ("s3:bucket?locking=none&endpoint=localhost:9000", "must be an http:// or https:// URL"),
        ("s3:bucket?locking=none&prefix=../x", "must not contain '.', '..'"),
        // U+0600 (a prepended concatenation mark) joins the '/' after it into one Character.
        ("path:/d?prefix=a%D8%80/../x", "must not contain '.', '..'"),
        ("memory:?locking=dynamo&table=abc", "memory: keeps data in one process"),
        ("path:/d?locking=dynamo&table=a", "table name 'a'"),
    ]

    @Test(arguments: rejectionCases)
    func rejections(text: String, expected: String) {
        #expect {
            try StorageURI(text)
        } throws: { error in
            let e = error as! InvalidStorageURIError
            let message = e.description
            return message.contains(expected) && message.contains("Example: ") && message.contains(text)
                && e.kind == .invalidInput
        }
    }

    /// Names near S3's reserved shapes that S3 allows stay allowed.
    @Test(arguments: ["my.bucket.v1", "10.0.0", "192.168.1.1a", "bucket-s3aliases", "xn-abc", "a.mrap.b"])
    func bucketNamesNearTheReservedShapesAreAccepted(name: String) throws {
        #expect(StorageURI.problem(bucketName: name) == nil)
        #expect(try StorageURI("s3:\(name)?locking=none").backend == .s3(bucket: name))
    }

    /// A prefix of 200 bytes (its final '/' not counted) is taken; its keys stay within S3's 1,024
    /// bytes with the longest user id, every byte of it escaped.
    @Test func aPrefixOf200BytesIsTheLongest() throws {
        let longest = String(repeating: "p", count: 200)
        let uri = try StorageURI("s3:my-bucket?locking=none&prefix=/" + longest + "/")
        #expect(uri.prefix == longest + "/")
        let key = try UserKeys(prefix: uri.prefix).key(
            for: String(repeating: "\u{7F}", count: UserKeys.maximumUserIDBytes))
        #expect(key.utf8.count <= 1024, "\(key.utf8.count) bytes")
    }

    @Test func exampleInMessageParses() throws {
        for bad in ["s3:my-bucket", "path://host/x", "path:/d?locking=dynamo"] {
            do {
                _ = try StorageURI(bad)
                Issue.record("\(bad) was accepted")
            } catch {
                // The example the message shows must itself be valid.
                _ = try StorageURI(error.example)
            }
        }
    }
}

@Suite struct StorageURICacheTests {
    @Test func cacheIsMebibytesAndZeroTurnsItOff() async throws {
        #expect(try StorageURI("path:d?cache=256").cacheMebibytes == 256)
        #expect(try StorageURI("memory:?cache=0").cacheMebibytes == 0)
        #expect(try StorageURI("path:d").cacheMebibytes == nil)
        for bad in ["path:d?cache=-1", "path:d?cache=lots", "path:d?cache=99999999"] {
            #expect(throws: InvalidStorageURIError.self, "\(bad)") { try StorageURI(bad) }
            do { _ = try StorageURI(bad) } catch {
                #expect(error.description.contains("'cache' is the record cache's memory in MiB"))
            }
        }
        let off = try await StoreFactory().makeStore("memory:?cache=0")
        #expect(off.options.cacheBytes == 0)
        let sized = try await StoreFactory().makeStore("memory:?cache=8")
        #expect(sized.options.cacheBytes == 8 << 20)
    }
}

@Suite struct StorageURIIOTests {
    /// `io=` chooses where `path:` makes its blocking file-system calls; without it (or with
    /// `auto`) the storage decides by its root's file system, which is local here.
    @Test func ioPlacesThePathStoragesBlockingSteps() async throws {
        #expect(try StorageURI("path:d?io=threads").pathIO == .threads)
        #expect(try StorageURI("path:d?io=task").pathIO == .task)
        #expect(try StorageURI("path:d?io=auto").pathIO == .auto)
        #expect(try StorageURI("path:d").pathIO == nil)
        let dir = FileManager.default.temporaryDirectory.path + "/uri-io-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (query, offloads) in [
            ("?io=threads", true), ("?io=task", false), ("?io=auto", false), ("", false),
        ] {
            let store = try await StoreFactory().makeStore("path:\(dir)\(query)")
            let storage = try #require(store.storage as? PathStorage)
            #expect(storage.offloadsFileWork == offloads, "\(query)")
            // Either way the store works.
            let user = "u\(query.count)"
            let value = Preference(
                value: query, updatedAt: Timestamp(millisecondsSince1970: 1_700_000_000_000))
            try await store.update(user) { $0.preferences["unit"] = value }
            #expect(try await store.get(user).preferences["unit"] == value)
        }
    }
}
