struct Shape {
    int w;
    int area() const;
};
