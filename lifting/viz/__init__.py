"""See and measure what was lifted: wireframes, bird's-eye views, HTML gallery, dataset card.

Modules:
    reader     stream image records / QA samples out of a repository on disk
    wireframe  projected 3D box wireframes with near-plane clipping (PIL)
    bev        bird's-eye view of the boxes with the camera frustum (PIL)
    panel      the per-image PNG: photo + wireframes | bird's-eye view | QA pairs
    gallery    static self-contained HTML gallery with category / QA-family filters
    card       dataset card: counts and distributions as Markdown + matplotlib PNGs
    export3d   scene export for 3D viewers: PLY + JSON boxes, Rerun recording (optional)

Drawing is PIL only (no matplotlib per image: a gallery of thousands of images renders in
seconds); matplotlib (Agg) is used for the dataset card's plots.
"""
