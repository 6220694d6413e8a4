"""boto3 through s3proxy: the basics an application needs, and the awkward keys."""

import hashlib
import os

import boto3.s3.transfer
import pytest
from botocore.exceptions import ClientError

# Also through three replicas of mixed kinds (fs, moto, s3s-fs) behind the encrypting proxy.
pytestmark = pytest.mark.stacks("fs", "replicated", "s3only", "replicated-plain", "s3only-plain")


def code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def test_put_get_head_list_delete(s3, bucket):
    data = os.urandom(100_000)
    put = s3.put_object(Bucket=bucket, Key="obj.bin", Body=data, ContentType="image/png",
                        Metadata={"Owner": "alice"}, CacheControl="max-age=60")
    assert put["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="obj.bin")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"owner": "alice"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="obj.bin")
    assert head["ContentLength"] == len(data)
    assert head["LastModified"] == got["LastModified"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("obj.bin", len(data), put["ETag"])]
    part = s3.get_object(Bucket=bucket, Key="obj.bin", Range="bytes=-10")
    assert part["Body"].read() == data[-10:]
    assert part["ContentRange"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    assert s3.delete_object(Bucket=bucket, Key="obj.bin")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="obj.bin")
    assert code(e) == "NoSuchKey"


def test_multipart_upload_file_and_download(s3, bucket, tmp_path):
    src = tmp_path / "big"
    src.write_bytes(os.urandom(21 * 1024 * 1024 + 17))
    cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(src), bucket, "big", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == src.stat().st_size
    assert head["ETag"].strip('"').endswith("-5")
    dst = tmp_path / "back"
    s3.download_file(bucket, "big", str(dst), Config=cfg)
    assert dst.read_bytes() == src.read_bytes()


def test_copy_and_metadata_replace(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", Metadata={"mode": "33188"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"payload"
    assert s3.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"mode": "33188"}
    # s3fs's chmod: copy onto itself with REPLACE.
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   Metadata={"mode": "33261"}, MetadataDirective="REPLACE")
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"mode": "33261"}
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"payload"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert code(e) == "InvalidRequest"


EDGE_KEYS = ["a", "a/", "a/b", "//", "a//b", "..", ".", "../up", "with space", "100%", "a+b",
             "ünïcödé/文件", "hash#tag?x=1&y", "k" * 1024]


def test_edge_keys_round_trip_and_list_in_order(s3, bucket):
    for i, key in enumerate(EDGE_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=f"body {i}".encode())
    for i, key in enumerate(EDGE_KEYS):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"body {i}".encode(), key
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}):
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert keys == sorted(EDGE_KEYS, key=lambda k: k.encode())
    v1 = []
    for page in s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}):
        v1 += [o["Key"] for o in page.get("Contents", [])]
    assert v1 == keys


def test_delimiter_listing_and_pagination(s3, bucket):
    keys = [f"dir{d}/file{f:02}" for d in range(3) for f in range(12)] + ["top", "dir0/sub/x"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}))
    prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    objects = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert prefixes == ["dir0/", "dir1/", "dir2/"]
    assert objects == ["top"]
    sub = s3.list_objects(Bucket=bucket, Prefix="dir0/", Delimiter="/", MaxKeys=5)
    assert sub["IsTruncated"] and len(sub["Contents"]) == 5
    rest = s3.list_objects(Bucket=bucket, Prefix="dir0/", Delimiter="/", Marker=sub["NextMarker"])
    assert [o["Key"] for o in sub["Contents"] + rest["Contents"]] == [f"dir0/file{f:02}" for f in range(12)]
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == ["dir0/sub/"]


def test_delete_objects(s3, bucket):
    for k in ["x", "y", "z"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x"}, {"Key": "y"}, {"Key": "never"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["never", "x", "y"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["z"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "z"}], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet


def test_delete_objects_deletes_exactly_the_keys_sent(s3, bucket):
    for k in ["keep", "keep ", " keep", "\tkeep\n"]:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep "}, {"Key": "\tkeep\n"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["\tkeep\n", "keep "]
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == [" keep", "keep"]
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"keep"


def test_bucket_level_requests(s3, bucket):
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "")
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket=bucket, Key="keep", Body=b"1")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert code(e) == "BucketNotEmpty"
    # Re-creating one's own bucket is 200 in us-east-1, as S3's legacy behaviour.
    s3.create_bucket(Bucket=bucket)


def test_conditional_get(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"data")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=put["ETag"])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert code(e) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=put["ETag"])["Body"].read() == b"data"


def test_list_multipart_uploads_pages_and_rolls_up(s3, bucket):
    """Uploads in progress listed page by page (boto3's paginator follows NextKeyMarker and
    NextUploadIdMarker) come out in key order, each exactly once, like one big page; a
    delimiter rolls keys up into CommonPrefixes."""
    keys = ["a", "b", "b", "b", "dir/x", "dir/y", "z"]
    started = [(k, s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"]) for k in keys]
    try:
        whole = s3.list_multipart_uploads(Bucket=bucket)
        assert not whole["IsTruncated"]
        everything = [(u["Key"], u["UploadId"]) for u in whole["Uploads"]]
        # A replicated stack may list an upload once per replica that knows it.
        assert sorted({k for k, _ in everything}) == sorted(set(keys))
        assert [k for k, _ in everything] == sorted(k for k, _ in everything)
        pages = list(s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 2}))
        assert len(pages) >= len(everything) // 2
        assert all(len(p.get("Uploads", [])) <= 2 for p in pages)
        assert pages[0]["IsTruncated"] and pages[0]["NextKeyMarker"] and pages[0]["NextUploadIdMarker"]
        paged = [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])]
        assert paged == everything
        # Three uploads of one key, a page of one: the upload-id marker moves within the key.
        first = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a", MaxUploads=1)
        assert [u["Key"] for u in first["Uploads"]] == ["b"] and first["IsTruncated"]
        second = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="b", UploadIdMarker=first["NextUploadIdMarker"],
                                           MaxUploads=1)
        assert [u["Key"] for u in second["Uploads"]] == ["b"]
        assert second["Uploads"][0]["UploadId"] != first["Uploads"][0]["UploadId"]
        rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
        assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["dir/"]
        assert "dir/x" not in {u["Key"] for u in rolled["Uploads"]}
        inside = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", Prefix="dir/")
        assert sorted({u["Key"] for u in inside["Uploads"]}) == ["dir/x", "dir/y"]
        after_dir = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", KeyMarker="dir/")
        assert {u["Key"] for u in after_dir["Uploads"]} == {"z"} and not after_dir.get("CommonPrefixes")
    finally:
        for k, upload_id in started:
            s3.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=upload_id)
    left = s3.list_multipart_uploads(Bucket=bucket)
    assert not [u for u in left.get("Uploads", []) if u["Key"] in keys]
