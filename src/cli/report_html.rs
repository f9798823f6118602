//! A picture of one memory failure: a self-contained HTML page with an inline SVG that draws the
//! failed pool range, every owner (files with path, offset and shared or private; metadata
//! structures; free blocks), every view and process that was told and how, and what was repaired
//! or lost; tables with the same facts follow the picture.
//!
//! Owns the page's layout and the reading of a failure report back from its JSON (the `--json`
//! output of `ferrodax poison`, which `--save` stores), so a saved report draws the same page as
//! the live one. Must never fetch anything (no scripts, fonts or images from outside: the page
//! works offline), never execute text from the report (every string is escaped), and never
//! touch a pool.

use serde::Deserialize;
use std::fmt::Write as _;

/// The file system block size.
const BLOCK_SIZE: u64 = 4096;
/// Width of the picture in CSS pixels.
const WIDTH: u32 = 1160;
/// Left and right margin inside the picture.
const MARGIN: u32 = 24;
/// Size of an owner, view or outcome box.
const BOX_WIDTH: u32 = 262;
const BOX_HEIGHT: u32 = 84;
/// Space between boxes, across and down.
const BOX_GAP: u32 = 16;
/// The most cells the pool bar is cut into (several blocks share a cell beyond that).
const MAX_BAR_CELLS: u64 = 64;
/// Roughly how many characters fit in a box: of its 14-pixel bold title, of a 12-pixel line.
const BOX_TITLE_CHARS: usize = 28;
const BOX_TEXT_CHARS: usize = 34;

/// Colours, one per kind of thing in the picture (also used by the legend).
const BAD: &str = "#d62828";
const SHARED: &str = "#f77f00";
const PRIVATE: &str = "#1d70b8";
const METADATA: &str = "#7b2cbf";
const FREE: &str = "#6c757d";
const VIEW: &str = "#2a9d8f";
const REPAIRED: &str = "#2b9348";
const INK: &str = "#1b1f24";

/// A failure report as `ferrodax poison --json` prints it (`memfail::FailureReport`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct SavedReport {
    pool_offset: u64,
    length: u64,
    files: Vec<SavedFileOwner>,
    metadata: Vec<String>,
    free_blocks: u64,
    recorded: SavedOutcome,
    views: Vec<SavedViewHit>,
}

/// A file owner of the failed range.
#[derive(Debug, Clone, Deserialize)]
struct SavedFileOwner {
    ino: u64,
    path: Option<String>,
    /// Absent in reports saved before owners carried their pool offset.
    #[serde(default)]
    pool_offset: Option<u64>,
    file_offset: u64,
    length: u64,
    shared: bool,
}

/// What recording the poison did.
#[derive(Debug, Clone, Deserialize)]
struct SavedOutcome {
    newly_bad: u64,
    already_bad: u64,
    relocated: Vec<String>,
    lost_superblock_copies: Vec<u32>,
    lost: Vec<String>,
}

/// Who holds a view.
#[derive(Debug, Clone, Deserialize)]
struct SavedHolder {
    pid: u32,
    thread: String,
    #[serde(default)]
    tag: String,
}

/// A view page that showed a failed block.
#[derive(Debug, Clone, Deserialize)]
struct SavedViewHit {
    view: u64,
    holder: SavedHolder,
    ino: u64,
    file_offset: u64,
    address: u64,
    how: String,
    action: String,
}

impl SavedReport {
    /// Reads a report from its JSON.
    pub(super) fn from_json(text: &str) -> Result<SavedReport, String> {
        serde_json::from_str(text).map_err(|e| format!("not a ferrodax failure report: {e}"))
    }
}

/// `text` with the five XML special characters escaped (for text and attribute values).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `text` cut to `chars` characters with an ellipsis when longer.
fn fit(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` broken at spaces into lines of at most `chars` characters (a longer word is cut).
fn wrap(text: &str, chars: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let needed = current.chars().count() + usize::from(!current.is_empty()) + word.chars().count();
        if !current.is_empty() && needed > chars {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    lines.push(current);
    lines.into_iter().map(|line| fit(&line, chars)).collect()
}

/// A byte count in the largest unit that divides it (4 KiB, 64 KiB, 1 MiB, or bytes).
fn bytes_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// How a holder was told, in words (the report's `how`).
fn how_text(how: &str) -> &'static str {
    match how {
        "action_optional_notice" => "action-optional notice sent",
        "on_access" => "told on access (action-required)",
        "sigbus_on_access" => "no subscriber: SIGBUS on access",
        "accessor_notice" => "accessor: AR notice + SIGBUS",
        "accessor_sigbus" => "accessor: SIGBUS BUS_MCEERR_AR",
        _ => "told",
    }
}

/// One box of the picture: a coloured frame, a kind label and up to three lines of text.
struct Card {
    kind: String,
    colour: &'static str,
    title: String,
    lines: Vec<String>,
    /// Filled with a light tint of the colour (bad or lost things).
    alarming: bool,
}

/// Where the cards of one row went: their top-left corners.
struct Placed {
    corners: Vec<(u32, u32)>,
    bottom: u32,
}

/// Boxes per line of a row.
fn per_line() -> u32 {
    (WIDTH - 2 * MARGIN + BOX_GAP) / (BOX_WIDTH + BOX_GAP)
}

/// Top-left corners of `count` cards laid out from `top`, centred, wrapping after `per_line()`.
fn place(count: usize, top: u32) -> Placed {
    let per = per_line() as usize;
    let mut corners = Vec::with_capacity(count);
    for i in 0..count {
        let line = (i / per) as u32;
        let in_line = (count - (i / per) * per).min(per) as u32;
        let used = in_line * BOX_WIDTH + (in_line - 1) * BOX_GAP;
        let x = (WIDTH - used) / 2 + (i % per) as u32 * (BOX_WIDTH + BOX_GAP);
        corners.push((x, top + line * (BOX_HEIGHT + BOX_GAP)));
    }
    let lines = count.div_ceil(per).max(1) as u32;
    Placed { corners, bottom: top + lines * (BOX_HEIGHT + BOX_GAP) - BOX_GAP }
}

/// Draws one card at `(x, y)`.
fn draw_card(svg: &mut String, card: &Card, (x, y): (u32, u32)) {
    let fill = if card.alarming { "#fdecea" } else { "#ffffff" };
    let tooltip =
        std::iter::once(card.title.as_str()).chain(card.lines.iter().map(String::as_str)).collect::<Vec<_>>();
    let _ = write!(
        svg,
        r#"<g class="card"><title>{}</title><rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="8" fill="{fill}" stroke="{c}" stroke-width="2"/><rect x="{x}" y="{y}" width="6" height="{BOX_HEIGHT}" rx="3" fill="{c}"/>"#,
        escape(&tooltip.join("\n")),
        c = card.colour,
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" class="kind" fill="{}">{}</text>"#,
        x + 16,
        y + 17,
        card.colour,
        escape(&card.kind)
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" class="title">{}</text>"#,
        x + 16,
        y + 36,
        escape(&fit(&card.title, BOX_TITLE_CHARS))
    );
    let lines: Vec<String> = card.lines.iter().flat_map(|line| wrap(line, BOX_TEXT_CHARS)).collect();
    for (i, line) in lines.iter().take(2).enumerate() {
        // A third line does not fit: the second ends in an ellipsis (the tooltip has it all).
        let shown = if i == 1 && lines.len() > 2 {
            fit(&format!("{line} …"), BOX_TEXT_CHARS)
        } else {
            line.clone()
        };
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" class="line">{}</text>"#,
            x + 16,
            y + 55 + 17 * i as u32,
            escape(&shown)
        );
    }
    svg.push_str("</g>");
}

/// A curved line from `(x1, y1)` down to `(x2, y2)`.
fn draw_link(svg: &mut String, (x1, y1): (u32, u32), (x2, y2): (u32, u32), colour: &str) {
    let mid = (y1 + y2) / 2;
    let _ = write!(
        svg,
        r#"<path d="M {x1} {y1} C {x1} {mid}, {x2} {mid}, {x2} {y2}" fill="none" stroke="{colour}" stroke-width="2" stroke-opacity="0.75"/>"#
    );
}

/// A section heading inside the picture.
fn draw_heading(svg: &mut String, y: u32, text: &str) {
    let _ = write!(svg, r#"<text x="{MARGIN}" y="{y}" class="heading">{}</text>"#, escape(text));
}

/// The pool bar: the failed blocks as red cells with their offsets. Returns the bar's left edge,
/// its width and the pool range it covers, for placing links.
fn draw_pool_bar(svg: &mut String, report: &SavedReport, top: u32) -> (u32, u32, u64, u64) {
    let first = report.pool_offset / BLOCK_SIZE * BLOCK_SIZE;
    let end = (report.pool_offset + report.length.max(1)).div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    let blocks = (end - first) / BLOCK_SIZE;
    let cells = blocks.min(MAX_BAR_CELLS);
    let blocks_per_cell = blocks.div_ceil(cells);
    let (left, width) = (MARGIN + 90, WIDTH - 2 * MARGIN - 130);
    let _ = write!(
        svg,
        r#"<text x="{MARGIN}" y="{}" class="line">pool bytes</text><text x="{}" y="{}" class="line" text-anchor="end">{blocks} block(s) of 4 KiB</text>"#,
        top + 26,
        WIDTH - MARGIN,
        top - 16
    );
    for cell in 0..cells {
        let x0 = left + (u64::from(width) * cell / cells) as u32;
        let x1 = left + (u64::from(width) * (cell + 1) / cells) as u32;
        let cell_first = first + cell * blocks_per_cell * BLOCK_SIZE;
        let cell_end = (cell_first + blocks_per_cell * BLOCK_SIZE).min(end);
        let _ = write!(
            svg,
            r##"<rect class="bad-block" x="{x0}" y="{top}" width="{}" height="40" fill="{BAD}" stroke="#ffffff" stroke-width="1"><title>pool [{cell_first:#x}, {cell_end:#x}): failed</title></rect>"##,
            (x1 - x0).max(1)
        );
    }
    if cells <= 8 {
        for cell in 0..cells {
            let x0 = left + (u64::from(width) * cell / cells) as u32;
            let x1 = left + (u64::from(width) * (cell + 1) / cells) as u32;
            let cell_first = first + cell * blocks_per_cell * BLOCK_SIZE;
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" class="cell" text-anchor="middle">{cell_first:#x}</text>"#,
                (x0 + x1) / 2,
                top + 25
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}" class="line" text-anchor="middle">{first:#x}</text><text x="{}" y="{}" class="line" text-anchor="middle">{end:#x}</text>"#,
        top + 58,
        left + width,
        top + 58
    );
    (left, width, first, end)
}

/// The x position on the bar of pool byte `offset` (clamped to the bar).
fn bar_x((left, width, first, end): (u32, u32, u64, u64), offset: u64) -> u32 {
    let offset = offset.clamp(first, end);
    left + (u128::from(width) * u128::from(offset - first) / u128::from(end - first)) as u32
}

/// The cards of the owner row, each with the pool byte its link starts from (None: the middle).
fn owner_cards(report: &SavedReport) -> Vec<(Card, Option<u64>)> {
    let mut cards = Vec::new();
    for o in &report.files {
        let path = o.path.clone().unwrap_or_else(|| "(unlinked, still open)".to_string());
        let (kind, colour) = if o.shared { ("FILE · SHARED", SHARED) } else { ("FILE · PRIVATE", PRIVATE) };
        let mut lines = vec![format!("ino {} · file offset {:#x}", o.ino, o.file_offset)];
        lines.push(match o.pool_offset {
            Some(p) => format!("{} at pool {p:#x}", bytes_text(o.length)),
            None => bytes_text(o.length),
        });
        let centre = o.pool_offset.map(|p| p + o.length / 2);
        cards.push((Card { kind: kind.into(), colour, title: path, lines, alarming: false }, centre));
    }
    for m in &report.metadata {
        let superblock = m.starts_with("superblock copy");
        let lost = report
            .recorded
            .lost
            .iter()
            .any(|l| l.contains(m.as_str()) || (superblock && l.contains("superblock")));
        let fate = if lost {
            "LOST: no good copy left"
        } else if report.recorded.relocated.contains(m) {
            "repaired: moved off the bad blocks"
        } else if superblock {
            "never written again; the other copy carries on"
        } else {
            "recorded as bad"
        };
        let card = Card {
            kind: "METADATA".into(),
            colour: METADATA,
            title: m.clone(),
            lines: vec![fate.to_string()],
            alarming: fate.starts_with("LOST"),
        };
        cards.push((card, None));
    }
    if report.free_blocks > 0 {
        let card = Card {
            kind: "FREE SPACE".into(),
            colour: FREE,
            title: format!("{} free block(s)", report.free_blocks),
            lines: vec!["quarantined: never handed out again".into()],
            alarming: false,
        };
        cards.push((card, None));
    }
    if cards.is_empty() {
        let card = Card {
            kind: "NO NEW OWNER".into(),
            colour: FREE,
            title: "already known bad".into(),
            lines: vec![format!("{} block(s) were already quarantined", report.recorded.already_bad)],
            alarming: false,
        };
        cards.push((card, None));
    }
    cards
}

/// The owner card (index into `report.files`) a view hit belongs to: same inode, and the owner's
/// file range holds the view page when one does.
fn owner_of_view(report: &SavedReport, hit: &SavedViewHit) -> Option<usize> {
    let same_ino = || report.files.iter().position(|o| o.ino == hit.ino);
    report
        .files
        .iter()
        .position(|o| {
            o.ino == hit.ino
                && hit.file_offset < o.file_offset + o.length.max(1)
                && o.file_offset < hit.file_offset + BLOCK_SIZE
        })
        .or_else(same_ino)
}

/// The outcome cards: what recording the poison did, what is lost, what was repaired.
fn outcome_cards(report: &SavedReport) -> Vec<Card> {
    let r = &report.recorded;
    let mut cards = vec![Card {
        kind: "RECORDED".into(),
        colour: BAD,
        title: format!("{} block(s) newly bad", r.newly_bad),
        lines: vec!["quarantined for good".into(), format!("{} block(s) were already known", r.already_bad)],
        alarming: false,
    }];
    let file_bytes: u64 = report.files.iter().map(|o| o.length).sum();
    if !report.files.is_empty() {
        cards.push(Card {
            kind: "FILE DATA".into(),
            colour: BAD,
            title: format!("{} in {} owner range(s)", bytes_text(file_bytes), report.files.len()),
            lines: vec!["reads return EIO until rewritten;".into(), "a whole-block write recovers it".into()],
            alarming: true,
        });
    }
    for item in &r.relocated {
        cards.push(Card {
            kind: "REPAIRED".into(),
            colour: REPAIRED,
            title: item.clone(),
            lines: vec!["moved off the bad blocks".into(), "nothing lost".into()],
            alarming: false,
        });
    }
    for copy in &r.lost_superblock_copies {
        cards.push(Card {
            kind: "SUPERBLOCK".into(),
            colour: SHARED,
            title: format!("copy {copy} is on a bad block"),
            lines: vec!["the other copy carries on".into()],
            alarming: false,
        });
    }
    for item in &r.lost {
        cards.push(Card {
            kind: "LOST · READ-ONLY".into(),
            colour: BAD,
            title: "no good copy left".into(),
            lines: vec![item.clone()],
            alarming: true,
        });
    }
    if !report.views.is_empty() {
        cards.push(Card {
            kind: "VIEWS".into(),
            colour: VIEW,
            title: format!("{} view page(s) taken out", report.views.len()),
            lines: vec!["an access raises SIGBUS".into(), "(BUS_MCEERR_AR)".into()],
            alarming: false,
        });
    }
    cards
}

/// The legend at the bottom of the picture.
fn draw_legend(svg: &mut String, top: u32) {
    let items = [
        (BAD, "failed memory"),
        (SHARED, "shared file block"),
        (PRIVATE, "private file block"),
        (METADATA, "metadata"),
        (FREE, "free space"),
        (VIEW, "view / process"),
        (REPAIRED, "repaired"),
    ];
    let mut x = MARGIN;
    for (colour, label) in items {
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="14" height="14" rx="3" fill="{colour}"/><text x="{}" y="{}" class="line">{label}</text>"#,
            top,
            x + 20,
            top + 12
        );
        x += 44 + 7 * label.len() as u32;
    }
}

/// The inline SVG picture of `report`.
fn picture(report: &SavedReport) -> String {
    let mut svg = String::new();
    let mut body = String::new();
    let mut y = 28;
    draw_heading(&mut body, y, "Failed pool range");
    y += 14;
    let bar = draw_pool_bar(&mut body, report, y);
    let bar_bottom = y + 40;
    y += 96;

    draw_heading(&mut body, y, "Owners (from the reverse map)");
    y += 16;
    let owners = owner_cards(report);
    let owner_place = place(owners.len(), y);
    for ((card, centre), &corner) in owners.iter().zip(&owner_place.corners) {
        let from = centre.map_or(bar.0 + bar.1 / 2, |p| bar_x(bar, p));
        draw_link(&mut body, (from, bar_bottom), (corner.0 + BOX_WIDTH / 2, corner.1), card.colour);
    }
    for ((card, _), &corner) in owners.iter().zip(&owner_place.corners) {
        draw_card(&mut body, card, corner);
    }
    y = owner_place.bottom + 44;

    draw_heading(&mut body, y, "Views and processes told");
    y += 16;
    let views: Vec<Card> = if report.views.is_empty() {
        vec![Card {
            kind: "NO VIEWS".into(),
            colour: FREE,
            title: "no process mapped them".into(),
            lines: vec!["nobody had to be told".into()],
            alarming: false,
        }]
    } else {
        report
            .views
            .iter()
            .map(|v| {
                let who = if v.holder.tag.is_empty() {
                    v.holder.thread.clone()
                } else {
                    format!("{} · {}", v.holder.thread, v.holder.tag)
                };
                Card {
                    kind: format!("PID {} · VIEW {} · INO {}", v.holder.pid, v.view, v.ino),
                    colour: VIEW,
                    title: who,
                    lines: vec![
                        format!("page {:#x} · at {:#x}", v.file_offset, v.address),
                        how_text(&v.how).to_string(),
                    ],
                    alarming: v.how.starts_with("accessor"),
                }
            })
            .collect()
    };
    let view_place = place(views.len(), y);
    for (i, hit) in report.views.iter().enumerate() {
        let corner = view_place.corners[i];
        if let Some(owner) = owner_of_view(report, hit) {
            let from = owner_place.corners[owner];
            draw_link(
                &mut body,
                (from.0 + BOX_WIDTH / 2, from.1 + BOX_HEIGHT),
                (corner.0 + BOX_WIDTH / 2, corner.1),
                VIEW,
            );
        }
    }
    for (card, &corner) in views.iter().zip(&view_place.corners) {
        draw_card(&mut body, card, corner);
    }
    y = view_place.bottom + 44;

    draw_heading(&mut body, y, "Outcome");
    y += 16;
    let outcome = outcome_cards(report);
    let outcome_place = place(outcome.len(), y);
    for (card, &corner) in outcome.iter().zip(&outcome_place.corners) {
        draw_card(&mut body, card, corner);
    }
    y = outcome_place.bottom + 30;
    draw_legend(&mut body, y);
    let height = y + 30;

    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="failure-picture" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="memory failure at pool {:#x}">"#,
        report.pool_offset
    );
    svg.push_str(&body);
    svg.push_str("</svg>");
    svg
}

/// An HTML table with a header row and body rows (cells escaped).
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(html, r#"<tr><td colspan="{}">none</td></tr>"#, head.len());
    }
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// The whole page: title, one-line summary, the picture, then tables of the same facts.
pub(super) fn render(report: &SavedReport) -> String {
    let end = report.pool_offset + report.length;
    let title = format!("Memory failure at pool [{:#x}, {end:#x})", report.pool_offset);
    let summary = format!(
        "{} block(s) newly bad, {} already known · {} file owner range(s) · {} metadata structure(s) · {} view page(s) taken out",
        report.recorded.newly_bad,
        report.recorded.already_bad,
        report.files.len(),
        report.metadata.len(),
        report.views.len()
    );
    let owners: Vec<Vec<String>> = report
        .files
        .iter()
        .map(|o| {
            vec![
                o.path.clone().unwrap_or_else(|| "(unlinked, still open)".into()),
                o.ino.to_string(),
                o.pool_offset.map_or("-".into(), |p| format!("{p:#x}")),
                format!("{:#x}", o.file_offset),
                o.length.to_string(),
                if o.shared { "shared" } else { "private" }.into(),
            ]
        })
        .chain(
            report
                .metadata
                .iter()
                .map(|m| vec![m.clone(), "-".into(), "-".into(), "-".into(), "-".into(), "metadata".into()]),
        )
        .collect();
    let views: Vec<Vec<String>> = report
        .views
        .iter()
        .map(|v| {
            vec![
                v.holder.pid.to_string(),
                v.holder.thread.clone(),
                v.view.to_string(),
                v.ino.to_string(),
                format!("{:#x}", v.file_offset),
                format!("{:#x}", v.address),
                v.action.clone(),
            ]
        })
        .collect();
    let r = &report.recorded;
    let mut outcome = vec![
        vec!["newly bad blocks".to_string(), r.newly_bad.to_string()],
        vec!["already known bad blocks".to_string(), r.already_bad.to_string()],
        vec!["free blocks quarantined".to_string(), report.free_blocks.to_string()],
    ];
    outcome.extend(r.relocated.iter().map(|x| vec!["repaired (moved, nothing lost)".into(), x.clone()]));
    outcome
        .extend(r.lost_superblock_copies.iter().map(|c| vec!["superblock copy lost".into(), c.to_string()]));
    outcome.extend(r.lost.iter().map(|x| vec!["LOST".into(), x.clone()]));
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: {INK}; background: #f8f9fa; margin: 16px 20px; }}
h1 {{ font-size: 22px; margin: 0 0 4px 0; }}
p.summary {{ margin: 0 0 12px 0; color: #495057; font-size: 14px; }}
svg {{ background: #ffffff; border: 1px solid #dee2e6; border-radius: 8px; display: block; }}
svg text {{ font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; fill: {INK}; }}
svg text.heading {{ font-size: 15px; font-weight: bold; }}
svg text.kind {{ font-size: 11px; font-weight: bold; letter-spacing: 0.5px; }}
svg text.title {{ font-size: 14px; font-weight: bold; }}
svg text.line {{ font-size: 12px; }}
svg text.cell {{ font-size: 12px; fill: #ffffff; font-weight: bold; }}
h2 {{ font-size: 16px; margin: 18px 0 6px 0; }}
table {{ border-collapse: collapse; font-size: 13px; background: #ffffff; }}
th, td {{ border: 1px solid #dee2e6; padding: 3px 8px; text-align: left; }}
th {{ background: #e9ecef; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="summary">{summary}</p>
{svg}
<h2>Owners</h2>
{owners}
<h2>Views and processes told</h2>
{views}
<h2>Outcome</h2>
{outcome}
</body>
</html>
"#,
        title = escape(&title),
        summary = escape(&summary),
        svg = picture(report),
        owners =
            table(&["path or structure", "ino", "pool offset", "file offset", "bytes", "sharing"], &owners),
        views = table(&["pid", "thread", "view", "ino", "file offset", "address", "how"], &views),
        outcome = table(&["what", ""], &outcome),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_in_paths() {
        assert_eq!(escape(r#"/a<b>&"c'"#), "/a&lt;b&gt;&amp;&quot;c&#39;");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_only_overlong_words() {
        assert_eq!(
            wrap("never written again; the other copy carries on", 24),
            ["never written again; the", "other copy carries on"]
        );
        assert_eq!(wrap("abcdefghij", 5), ["abcd…"]);
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn place_centres_cards_and_wraps_after_a_full_line() {
        let per = per_line() as usize;
        let placed = place(per + 1, 100);
        assert_eq!(placed.corners[0].1, 100);
        assert_eq!(placed.corners[per].1, 100 + BOX_HEIGHT + BOX_GAP, "the card after a full line wraps");
        assert_eq!(placed.corners[per].0, (WIDTH - BOX_WIDTH) / 2, "a lone card is centred");
        assert_eq!(placed.bottom, 100 + 2 * BOX_HEIGHT + BOX_GAP);
    }
}
