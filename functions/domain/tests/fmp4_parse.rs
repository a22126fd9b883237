//! Well-formed inputs and structural rules of the bounded fMP4 parser.
#![allow(clippy::unwrap_used)]

mod fmp4_common;

use chunkstream_domain::fmp4::{
    iter_boxes, read_box_header, summarize_init_segment, summarize_media_segment,
    validate_box_tree, Fmp4Error, FourCc,
};
use fmp4_common::*;

#[test]
fn per_sample_segment_is_summarized() {
    let seg = Segment::single(TrafSpec::new(7, 25_600, samples(50, 512, 40)));
    let bytes = seg.build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.sequence_number, 1);
    assert_eq!(s.tracks.len(), 1);
    let t = &s.tracks[0];
    assert_eq!(t.track_id, 7);
    assert_eq!(t.base_media_decode_time, Some(25_600));
    assert_eq!(t.trun_count, 1);
    assert_eq!(t.sample_count, 50);
    assert_eq!(t.total_duration, 50 * 512);
    assert_eq!(t.total_sample_size, 50 * 40);
    assert_eq!(t.first_sample_flags, Some(SYNC));
    assert!(t.first_sample_is_sync);
    let prefix = seg.prefix().len() as u64;
    let moof = seg.moof().len() as u64;
    assert_eq!(s.moof_offset, prefix);
    assert_eq!(s.moof_size, moof);
    assert_eq!(s.mdat_offset, prefix + moof);
    assert_eq!(s.mdat_header_len, 8);
    assert_eq!(s.mdat_size, 8 + 50 * 40);
    assert_eq!(s.total_len, bytes.len() as u64);
    assert_eq!(t.data_start, Some(prefix + moof + 8));
    assert_eq!(t.data_end, Some(bytes.len() as u64));
    assert_eq!(s.mdat_payload(), (prefix + moof + 8, bytes.len() as u64));
}

#[test]
fn ffmpeg_style_defaults_segment_is_summarized() {
    let mut traf = TrafSpec::new(2, 0, samples(10, 1024, 300));
    traf.style = Style::Defaults;
    traf.tfdt_version = 0;
    let bytes = Segment::single(traf).build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    let t = &s.tracks[0];
    assert_eq!(t.base_media_decode_time, Some(0));
    assert_eq!(t.sample_count, 10);
    assert_eq!(t.total_duration, 10_240);
    assert_eq!(t.total_sample_size, 3000);
    assert!(
        t.first_sample_is_sync,
        "first-sample-flags overrides tfhd default"
    );
}

#[test]
fn varying_durations_are_summed() {
    let mut list = samples(3, 1000, 10);
    list[1].duration = 1001;
    list[2].duration = 999;
    let mut traf = TrafSpec::new(1, 5, list);
    traf.style = Style::Defaults;
    let bytes = Segment::single(traf).build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.tracks[0].total_duration, 3000);
}

#[test]
fn fragment_without_any_sample_flags_is_not_provably_sync() {
    let mut traf = TrafSpec::new(1, 0, samples(4, 512, 10));
    traf.style = Style::NoFlags;
    let bytes = Segment::single(traf).build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.tracks[0].first_sample_flags, None);
    assert!(!s.tracks[0].first_sample_is_sync);
}

#[test]
fn segment_without_styp_or_sidx_is_accepted() {
    let mut seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    seg.styp = false;
    seg.sidx = false;
    let bytes = seg.build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.moof_offset, 0);
}

#[test]
fn prft_emsg_free_before_moof_are_skipped() {
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    let emsg = full(
        b"emsg",
        0,
        0,
        b"urn:x\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    );
    let prft = full(b"prft", 0, 0, &[0u8; 16]);
    let free = bx(b"free", &[0u8; 5]);
    let bytes = cat(&[
        &styp(),
        &sidx(12800),
        &sidx(12800),
        &prft,
        &emsg,
        &free,
        &seg.moof(),
        &seg.mdat(),
    ]);
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.tracks[0].sample_count, 3);
}

#[test]
fn unknown_and_uuid_children_of_moof_and_traf_are_skipped() {
    let mut traf = TrafSpec::new(1, 0, samples(3, 512, 10));
    let mut uuid = b"uuid".to_vec();
    uuid.extend([0xab; 16]);
    uuid.extend([1, 2, 3]);
    let uuid_box = cat(&[&u32be(8 + uuid.len() as u32 - 4), &uuid]);
    traf.extra = cat(&[&uuid_box, &bx(b"sbgp", &[0; 12]), &bx(b"zzzz", &[])]);
    let mut seg = Segment::single(traf);
    seg.moof_extra = bx(b"pssh", &[0u8; 20]);
    let bytes = seg.build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.tracks[0].sample_count, 3);
}

#[test]
fn only_the_head_needs_to_be_in_memory() {
    let bytes = video_segment();
    let seg = Segment::single(TrafSpec::new(1, 25_600, samples(50, 512, 40)));
    let head_len = seg.prefix().len() + seg.moof().len() + 8;
    let full_summary = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    let head_summary = summarize_media_segment(&bytes[..head_len], bytes.len() as u64).unwrap();
    assert_eq!(full_summary, head_summary);
}

#[test]
fn moof_not_fully_in_head_is_rejected() {
    let bytes = video_segment();
    let seg = Segment::single(TrafSpec::new(1, 25_600, samples(50, 512, 40)));
    let head_len = seg.prefix().len() + 100;
    let err = summarize_media_segment(&bytes[..head_len], bytes.len() as u64).unwrap_err();
    assert!(
        matches!(err, Fmp4Error::MoofTooLarge { limit, .. } if limit == head_len as u64),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("moof larger than {head_len} bytes")));
}

#[test]
fn mdat_header_not_in_head_is_rejected() {
    let bytes = video_segment();
    let seg = Segment::single(TrafSpec::new(1, 25_600, samples(50, 512, 40)));
    let head_len = seg.prefix().len() + seg.moof().len() + 4;
    let err = summarize_media_segment(&bytes[..head_len], bytes.len() as u64).unwrap_err();
    assert!(matches!(err, Fmp4Error::HeaderNotInHead { .. }), "{err:?}");
}

#[test]
fn head_longer_than_object_is_rejected() {
    let bytes = video_segment();
    let err = summarize_media_segment(&bytes, bytes.len() as u64 - 1).unwrap_err();
    assert!(
        matches!(err, Fmp4Error::HeadLongerThanObject { .. }),
        "{err:?}"
    );
}

#[test]
fn mdat_with_size_zero_extends_to_the_end() {
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    let mut mdat = seg.mdat();
    mdat[..4].copy_from_slice(&[0, 0, 0, 0]);
    let bytes = cat(&[&seg.prefix(), &seg.moof(), &mdat]);
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.mdat_size, mdat.len() as u64);
    assert_eq!(s.mdat_offset + s.mdat_size, bytes.len() as u64);
}

#[test]
fn mdat_with_64_bit_largesize_is_accepted() {
    let mut seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    seg.mdat_largesize = true;
    let bytes = seg.build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.mdat_header_len, 16);
    assert_eq!(s.tracks[0].data_start, Some(s.mdat_offset + 16));
}

#[test]
fn explicit_base_data_offset_is_honoured() {
    // moof with tfhd base-data-offset = absolute mdat payload start, trun data_offset 0.
    let mdat_payload = [7u8; 30];
    let build = |base: u64| {
        let tfhd = full(
            b"tfhd",
            0,
            0x01 | 0x08 | 0x20,
            &cat(&[&u32be(1), &u64be(base), &u32be(100), &u32be(SYNC)]),
        );
        let trun = full(
            b"trun",
            0,
            0x0201,
            &cat(&[
                &u32be(3),
                &0i32.to_be_bytes(),
                &u32be(10),
                &u32be(10),
                &u32be(10),
            ]),
        );
        let tfdt = full(b"tfdt", 0, 0, &u32be(0));
        let traf = bx(b"traf", &cat(&[&tfhd, &tfdt, &trun]));
        let moof = bx(b"moof", &cat(&[&full(b"mfhd", 0, 0, &u32be(1)), &traf]));
        cat(&[&moof, &bx(b"mdat", &mdat_payload)])
    };
    let moof_len = (build(0).len() - 38) as u64;
    let bytes = build(moof_len + 8);
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.tracks[0].data_start, Some(moof_len + 8));
    assert_eq!(s.tracks[0].total_duration, 300);
    // a base pointing 10 bytes further makes the run overflow the mdat
    let bytes = build(moof_len + 18);
    let err = summarize_media_segment(&bytes, bytes.len() as u64).unwrap_err();
    assert!(
        matches!(err, Fmp4Error::SampleDataOutsideMdat { .. }),
        "{err:?}"
    );
}

#[test]
fn two_trafs_are_both_summarized() {
    let mut seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    seg.trafs.push(TrafSpec::new(2, 0, samples(4, 1024, 20)));
    let bytes = seg.build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.tracks.len(), 2);
    assert_eq!(s.tracks[1].track_id, 2);
    assert_eq!(s.tracks[1].data_start, s.tracks[0].data_end);
    assert_eq!(s.tracks[1].data_end, Some(bytes.len() as u64));
}

#[test]
fn empty_trun_contributes_nothing() {
    let bytes = Segment::single(TrafSpec::new(1, 0, Vec::new())).build();
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.tracks[0].sample_count, 0);
    assert_eq!(s.tracks[0].data_start, None);
    assert!(!s.tracks[0].first_sample_is_sync);
}

#[test]
fn layout_violations_are_rejected() {
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    let (moof, mdat) = (seg.moof(), seg.mdat());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("second moof", cat(&[&moof, &moof, &mdat])),
        ("mdat before moof", cat(&[&mdat, &moof])),
        ("missing mdat", moof.clone()),
        ("missing moof", cat(&[&styp(), &mdat])),
        ("box after mdat", cat(&[&moof, &mdat, &bx(b"free", &[])])),
        ("second mdat", cat(&[&moof, &mdat, &mdat])),
        ("styp not first", cat(&[&sidx(1), &styp(), &moof, &mdat])),
        (
            "unknown top-level box",
            cat(&[&bx(b"moov", &[]), &moof, &mdat]),
        ),
        (
            "free between moof and mdat",
            cat(&[&moof, &bx(b"free", &[]), &mdat]),
        ),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let r = summarize_media_segment(&bytes, bytes.len() as u64);
        assert!(r.is_err(), "{name}: {r:?}");
    }
}

#[test]
fn moof_without_mfhd_or_traf_or_tfhd_is_rejected() {
    // the traf box alone: strip the moof header (8) and mfhd (16)
    let traf = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10))).moof()[24..].to_vec();
    let mfhd = full(b"mfhd", 0, 0, &u32be(1));
    let mdat = bx(b"mdat", &[0; 100]); // room for the traf's data offsets
    let no_mfhd = cat(&[&bx(b"moof", &traf), &mdat]);
    let no_traf = cat(&[&bx(b"moof", &mfhd), &mdat]);
    let no_tfhd = cat(&[
        &bx(
            b"moof",
            &cat(&[&mfhd, &bx(b"traf", &full(b"tfdt", 0, 0, &u32be(0)))]),
        ),
        &mdat,
    ]);
    for (bytes, missing) in [(no_mfhd, b"mfhd"), (no_traf, b"traf"), (no_tfhd, b"tfhd")] {
        let err = summarize_media_segment(&bytes, bytes.len() as u64).unwrap_err();
        assert!(
            matches!(err, Fmp4Error::MissingBox { kind, .. } if kind == FourCc(*missing)),
            "{err:?}"
        );
    }
}

#[test]
fn unsupported_versions_are_rejected() {
    let mut traf = TrafSpec::new(1, 0, samples(3, 512, 10));
    traf.tfdt = None;
    traf.extra = full(b"tfdt", 2, 0, &u64be(0));
    let bytes = Segment::single(traf).build();
    let err = summarize_media_segment(&bytes, bytes.len() as u64).unwrap_err();
    assert!(
        matches!(err, Fmp4Error::UnsupportedVersion { version: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn duplicate_tfhd_or_tfdt_is_rejected() {
    let mut traf = TrafSpec::new(1, 0, samples(3, 512, 10));
    traf.extra = full(b"tfdt", 0, 0, &u32be(0));
    let bytes = Segment::single(traf).build();
    let err = summarize_media_segment(&bytes, bytes.len() as u64).unwrap_err();
    assert!(matches!(err, Fmp4Error::DuplicateBox { .. }), "{err:?}");
}

#[test]
fn missing_default_duration_is_reported() {
    // tfhd without defaults, trun with sizes only: duration would come from trex.
    let tfhd = full(b"tfhd", 0, 0x02_0000, &u32be(1));
    let trun = full(
        b"trun",
        0,
        0x0201,
        &cat(&[&u32be(1), &0i32.to_be_bytes(), &u32be(1)]),
    );
    let moof_body = cat(&[
        &full(b"mfhd", 0, 0, &u32be(1)),
        &bx(b"traf", &cat(&[&tfhd, &trun])),
    ]);
    let bytes = cat(&[&bx(b"moof", &moof_body), &bx(b"mdat", &[0])]);
    let err = summarize_media_segment(&bytes, bytes.len() as u64).unwrap_err();
    assert!(
        matches!(
            err,
            Fmp4Error::MissingSampleDefault {
                field: "duration",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn negative_data_offset_before_file_start_is_rejected() {
    let tfhd = full(b"tfhd", 0, 0x02_0008, &cat(&[&u32be(1), &u32be(10)]));
    let trun = full(
        b"trun",
        0,
        0x0201,
        &cat(&[&u32be(1), &(-1000i32).to_be_bytes(), &u32be(1)]),
    );
    let moof_body = cat(&[
        &full(b"mfhd", 0, 0, &u32be(1)),
        &bx(b"traf", &cat(&[&tfhd, &trun])),
    ]);
    let bytes = cat(&[&bx(b"moof", &moof_body), &bx(b"mdat", &[0])]);
    let err = summarize_media_segment(&bytes, bytes.len() as u64).unwrap_err();
    assert!(
        matches!(err, Fmp4Error::InvalidDataOffset { .. }),
        "{err:?}"
    );
}

#[test]
fn ffmpeg_video_fixture_is_summarized() {
    // Numbers from tests/fixtures/ffmpeg_out.mpd: <S t="0" d="25600" r="1"/>, timescale 12800.
    let bytes = fixture("ffmpeg_video_seg1.m4s");
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(s.sequence_number, 1);
    assert_eq!((s.moof_offset, s.moof_size), (76, 700));
    assert_eq!((s.mdat_offset, s.mdat_size), (776, 30_893));
    let t = &s.tracks[0];
    assert_eq!(t.track_id, 1);
    assert_eq!(t.base_media_decode_time, Some(0));
    assert_eq!(t.sample_count, 50);
    assert_eq!(t.total_duration, 25_600);
    assert_eq!(t.total_sample_size, 30_893 - 8);
    assert!(t.first_sample_is_sync);
    assert_eq!(t.data_start, Some(784));
    // the worker reads only a head: 4 KiB is plenty for this moof
    let head = summarize_media_segment(&bytes[..4096], bytes.len() as u64).unwrap();
    assert_eq!(head, s);
}

#[test]
fn ffmpeg_audio_fixture_is_summarized() {
    // MPD: second <S d="96256"/>; tfdt = 92160 + 1024 (AAC priming, elst media_time).
    let bytes = fixture("ffmpeg_audio_seg2.m4s");
    let s = summarize_media_segment(&bytes, bytes.len() as u64).unwrap();
    let t = &s.tracks[0];
    assert_eq!(s.sequence_number, 2);
    assert_eq!(t.track_id, 1);
    assert_eq!(t.base_media_decode_time, Some(93_184));
    assert_eq!(t.sample_count, 94);
    assert_eq!(t.total_duration, 96_256);
    assert_eq!(t.total_sample_size, s.mdat_size - 8);
}

#[test]
fn ffmpeg_init_fixtures_are_summarized() {
    let video = summarize_init_segment(&fixture("ffmpeg_video_init.mp4")).unwrap();
    assert_eq!(video.tracks.len(), 1);
    let v = &video.tracks[0];
    assert_eq!(
        (v.track_id, &v.handler_type, v.timescale),
        (1, b"vide", 12_800)
    );
    assert!(v.is_video() && !v.is_audio());
    assert!(v.trex.is_some());

    let audio = summarize_init_segment(&fixture("ffmpeg_audio_init.mp4")).unwrap();
    let a = &audio.tracks[0];
    assert_eq!(
        (a.track_id, &a.handler_type, a.timescale),
        (1, b"soun", 48_000)
    );
    assert!(a.is_audio());
    assert_eq!(audio.total_len, 765);
}

#[test]
fn synthetic_init_with_two_tracks_is_summarized() {
    let bytes = init_segment(&[(1, b"vide", 15_360), (2, b"soun", 48_000)], true);
    let s = summarize_init_segment(&bytes).unwrap();
    assert_eq!(&s.major_brand, b"iso6");
    let ids: Vec<_> = s.tracks.iter().map(|t| (t.track_id, t.timescale)).collect();
    assert_eq!(ids, vec![(1, 15_360), (2, 48_000)]);
    assert_eq!(
        s.tracks[1].trex.unwrap().default_sample_description_index,
        1
    );
}

#[test]
fn init_segment_rules_are_enforced() {
    let good = init_segment(&[(1, b"vide", 15_360)], true);
    let (ftyp, moov) = good.split_at(24);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no mvex", init_segment(&[(1, b"vide", 15_360)], false)),
        ("no tracks", init_segment(&[], true)),
        ("zero timescale", init_segment(&[(1, b"vide", 0)], true)),
        ("zero track id", init_segment(&[(0, b"vide", 1)], true)),
        (
            "duplicate track id",
            init_segment(&[(1, b"vide", 1), (1, b"soun", 1)], true),
        ),
        ("moov first", cat(&[moov, ftyp])),
        ("no moov", ftyp.to_vec()),
        ("two moovs", cat(&[ftyp, moov, moov])),
        ("media data in init", cat(&[&good, &bx(b"mdat", &[])])),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let r = summarize_init_segment(&bytes);
        assert!(r.is_err(), "{name}: {r:?}");
    }
}

#[test]
fn box_header_reader_handles_all_size_forms() {
    let b = bx(b"abcd", &[1, 2, 3]);
    let h = read_box_header(&b, 100).unwrap();
    assert_eq!(
        (h.kind, h.header_len, h.size, h.offset),
        (*b"abcd", 8, 11, 100)
    );
    assert_eq!(
        (h.payload_offset(), h.payload_len(), h.end()),
        (108, 3, 111)
    );

    let b = bx64(b"abcd", &[1, 2, 3]);
    let h = read_box_header(&b, 0).unwrap();
    assert_eq!((h.header_len, h.size), (16, 19));

    let mut b = raw_header(8 + 16 + 2, b"uuid");
    b.extend([9u8; 16]);
    b.extend([0, 0]);
    let h = read_box_header(&b, 0).unwrap();
    assert_eq!(h.header_len, 24);
    assert_eq!(h.user_type, Some([9u8; 16]));

    let b = raw_header(0, b"mdat");
    assert!(matches!(
        read_box_header(&b, 0),
        Err(Fmp4Error::SizeZeroNotAllowed { .. })
    ));
}

#[test]
fn iter_boxes_walks_siblings_and_stops_at_first_error() {
    let good = cat(&[&bx(b"aaaa", &[]), &bx(b"bbbb", &[1])]);
    let kinds: Vec<_> = iter_boxes(&good, 0)
        .map(|b| b.unwrap().header.kind)
        .collect();
    assert_eq!(kinds, vec![*b"aaaa", *b"bbbb"]);

    let bad = cat(&[
        &bx(b"aaaa", &[]),
        &raw_header(100, b"bbbb"),
        &bx(b"cccc", &[]),
    ]);
    let items: Vec<_> = iter_boxes(&bad, 0).collect();
    assert_eq!(items.len(), 2);
    assert!(items[1].is_err());
    assert_eq!(validate_box_tree(&good, 0).unwrap(), 2);
}

#[test]
fn error_messages_are_readable() {
    let e = Fmp4Error::SampleCountTooLarge {
        offset: 156,
        sample_count: u32::MAX,
        record_len: 4,
        available: 120,
    };
    assert_eq!(
        e.to_string(),
        "box 'trun' at offset 156 declares 4294967295 samples of 4 bytes each but holds only 120 bytes"
    );
    assert_eq!(FourCc(*b"mo\x00f").to_string(), "mo\\x00f");
}

#[test]
fn box_skipped_past_the_head_reports_the_head_length() {
    // an emsg larger than the head pushes the next header out of the bytes read
    let seg = Segment::single(TrafSpec::new(1, 0, samples(3, 512, 10)));
    let emsg = full(b"emsg", 0, 0, &[0u8; 4000]);
    let bytes = cat(&[&styp(), &emsg, &seg.moof(), &seg.mdat()]);
    let head = &bytes[..1000];
    let err = summarize_media_segment(head, bytes.len() as u64).unwrap_err();
    assert_eq!(
        err,
        Fmp4Error::HeaderNotInHead {
            offset: (styp().len() + emsg.len()) as u64,
            head_len: 1000
        }
    );
    assert!(summarize_media_segment(&bytes, bytes.len() as u64).is_ok());
}
