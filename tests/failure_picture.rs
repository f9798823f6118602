//! Guards the picture of a memory failure: `poison --html` writes a self-contained page whose
//! inline SVG names every owner and every view that was told, `--save` stores the same JSON that
//! `--json` prints, `report` draws a saved report exactly as `poison` drew it, and a real headless
//! browser renders the page into a picture (Chromium; the browser tests skip loudly without it
//! unless FERRODAX_REQUIRE_BROWSER=1).

mod cli_sandbox;

use cli_sandbox::Sandbox;
use ferrodax::dax::{Holder, MapAccess};
use ferrodax::memfail::FailureFlags;
use ferrodax::{Fs, OpenOptions, Pool};
use std::path::{Path, PathBuf};
use std::process::Command;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

/// A real failure report with views: /photos/cat.jpg (8 pages) reflinked into /backup/cat.jpg,
/// both mapped by named holders (the first subscribed early for notices); the pool block of
/// page 2, shared by both files, fails.
/// Returns the report's JSON (as `poison --json` prints it).
fn report_with_views(dir: &Path) -> String {
    let pool = Pool::create(dir.join("views.pool"), 16 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    fs.create_dir("/photos").unwrap();
    fs.create_dir("/backup").unwrap();
    let cat = fs.open("/photos/cat.jpg", &rw()).unwrap();
    cat.write_at(&vec![0x61; 8 * 4096], 0).unwrap();
    let copy = fs.open("/backup/cat.jpg", &rw()).unwrap();
    fs.reflink(&cat, 0, &copy, 0, 0).unwrap();
    let holder = |tag: &str| Holder { pid: 4242, thread: "viewer".into(), tag: tag.into() };
    let view_a = cat.map_with_holder(0, 8 * 4096, MapAccess::Read, holder("thumbnailer")).unwrap();
    view_a.subscribe(true, std::sync::Arc::new(|_| {}));
    let view_b = copy.map_with_holder(0, 8 * 4096, MapAccess::Read, holder("backup-agent")).unwrap();
    let shared_block = fs.fiemap(&cat).unwrap()[0].physical + 2 * 4096;
    let report = fs.memory_failure(shared_block, 4096, FailureFlags::default()).unwrap();
    assert_eq!(report.views.len(), 2, "both views showed the failed block");
    let json = serde_json::to_string_pretty(&report).unwrap();
    drop((view_a, view_b));
    json
}

#[test]
fn poison_html_names_every_owner_in_the_svg_and_save_stores_what_json_prints() {
    let s = Sandbox::with_pool("16m");
    s.io("/a", &["pwrite -q -S 0x61 0 64k"]);
    s.io("/b", &["reflink -q /a"]);
    let out = s.ok(&["io", "-c", "fiemap -v", "test.pool", "/a"]);
    let sector: u64 = out
        .lines()
        .nth(2)
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .split("..")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let offset = (sector * 512 + 4096).to_string();
    let printed =
        s.ok(&["poison", "test.pool", &offset, "--json", "--html", "page.html", "--save", "failure.json"]);
    let saved = std::fs::read_to_string(s.host_path("failure.json")).unwrap();
    assert_eq!(saved.trim(), printed.trim(), "--save stores exactly the --json report");
    let page = std::fs::read_to_string(s.host_path("page.html")).unwrap();
    let svg = &page[page.find("<svg").expect("an inline svg")..page.find("</svg>").expect("the svg ends")];
    for text in [
        ">/a</text>",
        ">/b</text>",
        ">FILE · SHARED</text>",
        "class=\"bad-block\"",
        ">1 block(s) newly bad</text>",
    ] {
        assert!(svg.contains(text), "the picture lacks {text}: {svg}");
    }
    assert!(svg.contains(">NO VIEWS</text>"), "no process mapped the block: the picture says so");
    for external in ["<script", " src=", "href=", "url(", "@import"] {
        assert!(!page.contains(external), "the page is self-contained, yet has {external}");
    }

    s.ok(&["report", "failure.json", "--html", "again.html"]);
    assert_eq!(
        std::fs::read_to_string(s.host_path("again.html")).unwrap(),
        page,
        "a saved report draws the same page"
    );
    let text = s.ok(&["poison", "test.pool", &offset]);
    assert!(text.starts_with("memory failure at pool"), "text output still works: {text}");
    let bad = s.run(&["report", "page.html", "--html", "x.html"]);
    assert_eq!(bad.status, 1);
    assert!(bad.stderr.starts_with("ferrodax: report page.html: Invalid argument"), "{}", bad.stderr);
}

#[test]
fn report_html_of_a_failure_with_views_links_each_view_to_its_holder_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("views.json"), report_with_views(dir.path())).unwrap();
    let s = Sandbox::with_pool("16m");
    let saved = dir.path().join("views.json");
    let page_path = dir.path().join("views.html");
    s.ok(&["report", saved.to_str().unwrap(), "--html", page_path.to_str().unwrap()]);
    let page = std::fs::read_to_string(&page_path).unwrap();
    let svg = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()];
    for text in [
        ">/photos/cat.jpg</text>",
        ">/backup/cat.jpg</text>",
        ">viewer · thumbnailer</text>",
        ">viewer · backup-agent</text>",
        ">action-optional notice sent</text>",
        ">no subscriber: SIGBUS on access</text>",
    ] {
        assert!(svg.contains(text), "the picture lacks {text}");
    }
    assert_eq!(svg.matches(">PID 4242 · VIEW ").count(), 2, "one card per view, naming the holder's pid");
    // One link from the bar to each owner, one from each owner to its view.
    assert_eq!(svg.matches("<path ").count(), 2 + 2, "{svg}");
}

/// Chromium, or None after saying loudly why the browser test is skipped.
fn browser() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("FERRODAX_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "FERRODAX_REQUIRE_BROWSER=1 but no Chromium: apt-get install chromium"
        );
        cli_sandbox::skipped(
            "chromium_renders_the_failure_picture_with_owners_views_and_a_red_failed_range",
            "no Chromium (/usr/bin/chromium): the failure picture was not rendered in a browser \
             (apt-get install chromium; FERRODAX_REQUIRE_BROWSER=1 makes this a failure)",
        );
    }
    found
}

/// Runs headless Chromium on `page` with `extra` arguments; returns standard output.
fn chromium(browser: &Path, page: &Path, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn chromium_renders_the_failure_picture_with_owners_views_and_a_red_failed_range() {
    let Some(browser) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("views.json"), report_with_views(dir.path())).unwrap();
    let s = Sandbox::with_pool("16m");
    let page = dir.path().join("views.html");
    s.ok(&["report", dir.path().join("views.json").to_str().unwrap(), "--html", page.to_str().unwrap()]);

    let dom = chromium(&browser, &page, &["--dump-dom"]);
    let svg = &dom[dom.find("<svg").expect("the browser's DOM has the svg")..dom.find("</svg>").unwrap()];
    for text in [
        "/photos/cat.jpg",
        "/backup/cat.jpg",
        "viewer · thumbnailer",
        "PID 4242 · VIEW",
        "1 block(s) newly bad",
    ] {
        assert!(svg.contains(text), "the rendered svg lacks {text}");
    }

    let shot = dir.path().join("shot.png");
    chromium(&browser, &page, &[&format!("--screenshot={}", shot.display()), "--window-size=1200,800"]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1200, 800));
    let channels = frame.color_type.samples();
    let pixels = &pixels[..frame.buffer_size()];
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks_exact(channels).map(|p| &p[..3]).collect();
    assert!(colours.len() > 50, "the screenshot is nearly blank: {} colours", colours.len());
    let near = |p: &[u8], (r, g, b): (u8, u8, u8)| {
        p[0].abs_diff(r) <= 4 && p[1].abs_diff(g) <= 4 && p[2].abs_diff(b) <= 4
    };
    let count = |rgb| pixels.chunks_exact(channels).filter(|p| near(p, rgb)).count();
    assert!(count((0xd6, 0x28, 0x28)) > 2000, "the failed range is drawn in red");
    assert!(count((0xf7, 0x7f, 0x00)) > 200, "shared owners are framed in orange");
    assert!(count((0x2a, 0x9d, 0x8f)) > 200, "views are framed in teal");
}
