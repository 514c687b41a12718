#include "runtime/shared_ptr.hh"

#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

using namespace reef;

namespace {

// Counts constructions and destructions so each test can check "destroyed exactly once".
struct tracked {
    static inline int alive = 0;
    static inline int destroyed = 0;
    int value;

    explicit tracked(int v = 0) : value(v) { ++alive; }
    tracked(const tracked& x) : value(x.value) { ++alive; }
    ~tracked() {
        --alive;
        ++destroyed;
    }
    static void reset_counts() {
        alive = 0;
        destroyed = 0;
    }
};

struct self_ref : enable_lw_shared_from_this<self_ref> {
    static inline int destroyed = 0;
    int value;
    explicit self_ref(int v) : value(v) {}
    ~self_ref() { ++destroyed; }
};

// A base without a virtual destructor: shared_ptr must still destroy the derived object.
struct plain_base {
    int b = 1;
};
struct plain_derived : plain_base {
    static inline int destroyed = 0;
    std::string s = "derived";
    ~plain_derived() { ++destroyed; }
};

struct poly_base {
    virtual ~poly_base() = default;
    virtual int id() const { return 0; }
};
struct poly_a : poly_base {
    int id() const override { return 1; }
};
struct poly_b : poly_base {
    int id() const override { return 2; }
};

// Multiple inheritance: the second base lives at a non-zero offset, so pointer adjustment matters.
struct left_part {
    virtual ~left_part() = default;
    long l = 11;
};
struct right_part {
    virtual ~right_part() = default;
    long r = 22;
};
struct both : left_part, right_part {
    static inline int destroyed = 0;
    ~both() override { ++destroyed; }
};

struct node : enable_shared_from_this<node> {
    static inline int destroyed = 0;
    int value;
    explicit node(int v) : value(v) {}
    ~node() { ++destroyed; }
};
struct derived_node : node {
    derived_node() : node(5) {}
};

struct parent;
struct child {
    weak_ptr<parent> up;
};
struct parent {
    static inline int destroyed = 0;
    shared_ptr<child> down;
    ~parent() { ++destroyed; }
};

struct throws_on_construct {
    static inline int attempts = 0;
    tracked member{1};
    throws_on_construct() {
        ++attempts;
        throw std::runtime_error("ctor");
    }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// lw_shared_ptr

TEST(lw_shared_ptr, counts_and_single_destruction) {
    tracked::reset_counts();
    {
        auto p = make_lw_shared<tracked>(7);
        EXPECT_EQ(p.use_count(), 1);
        EXPECT_TRUE(p.owned());
        EXPECT_EQ(p->value, 7);
        EXPECT_EQ((*p).value, 7);
        {
            auto q = p;
            EXPECT_EQ(p.use_count(), 2);
            EXPECT_EQ(q.get(), p.get());
            EXPECT_FALSE(p.owned());
            lw_shared_ptr<tracked> r;
            r = q;
            EXPECT_EQ(p.use_count(), 3);
        }
        EXPECT_EQ(p.use_count(), 1);
        EXPECT_EQ(tracked::destroyed, 0);
    }
    EXPECT_EQ(tracked::destroyed, 1);
    EXPECT_EQ(tracked::alive, 0);
}

TEST(lw_shared_ptr, empty_and_null) {
    lw_shared_ptr<int> p;
    EXPECT_FALSE(p);
    EXPECT_EQ(p.get(), nullptr);
    EXPECT_EQ(p.use_count(), 0);
    EXPECT_TRUE(p == nullptr);
    EXPECT_TRUE(nullptr == p);
    p = make_lw_shared<int>(3);
    EXPECT_TRUE(p);
    EXPECT_TRUE(p != nullptr);
    p = nullptr;
    EXPECT_FALSE(p);
}

TEST(lw_shared_ptr, moves_leave_source_empty) {
    tracked::reset_counts();
    auto p = make_lw_shared<tracked>(1);
    auto* raw = p.get();
    lw_shared_ptr<tracked> q(std::move(p));
    EXPECT_FALSE(p);  // NOLINT(bugprone-use-after-move): checking the documented moved-from state
    EXPECT_EQ(q.get(), raw);
    EXPECT_EQ(q.use_count(), 1);
    lw_shared_ptr<tracked> r;
    r = std::move(q);
    EXPECT_FALSE(q);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(r.use_count(), 1);
    EXPECT_EQ(tracked::alive, 1);
    // Move-assigning over a live pointer releases the old object.
    r = make_lw_shared<tracked>(2);
    EXPECT_EQ(tracked::destroyed, 1);
    EXPECT_EQ(r->value, 2);
    r.reset();
    EXPECT_EQ(tracked::destroyed, 2);
    EXPECT_EQ(tracked::alive, 0);
}

TEST(lw_shared_ptr, self_assignment) {
    tracked::reset_counts();
    auto p = make_lw_shared<tracked>(9);
    auto& alias = p;
    p = alias;
    EXPECT_EQ(p.use_count(), 1);
    EXPECT_EQ(p->value, 9);
    p = std::move(alias);
    EXPECT_TRUE(p);
    EXPECT_EQ(p.use_count(), 1);
    EXPECT_EQ(tracked::destroyed, 0);
}

TEST(lw_shared_ptr, assignment_from_pointer_owned_by_the_old_object) {
    // The object being released holds the only other reference to the new value.
    struct holder {
        lw_shared_ptr<tracked> inner;
    };
    tracked::reset_counts();
    auto h = make_lw_shared<holder>();
    h->inner = make_lw_shared<tracked>(4);
    lw_shared_ptr<tracked> t;
    t = std::move(h->inner);
    h = nullptr;
    EXPECT_EQ(t->value, 4);
    EXPECT_EQ(tracked::alive, 1);
}

TEST(lw_shared_ptr, enable_shared_from_this) {
    self_ref::destroyed = 0;
    {
        auto p = make_lw_shared<self_ref>(5);
        // The count lives in the object: the pointer is the object itself.
        EXPECT_EQ(sizeof(p), sizeof(void*));
        auto q = p->shared_from_this();
        EXPECT_EQ(q.get(), p.get());
        EXPECT_EQ(p.use_count(), 2);
        const self_ref& cr = *p;
        lw_shared_ptr<const self_ref> c = cr.shared_from_this();
        EXPECT_EQ(p.use_count(), 3);
        EXPECT_EQ(c->value, 5);
        p = nullptr;
        q = nullptr;
        EXPECT_EQ(self_ref::destroyed, 0);
        EXPECT_EQ(c.use_count(), 1);
    }
    EXPECT_EQ(self_ref::destroyed, 1);
}

TEST(lw_shared_ptr, shared_from_this_on_unowned_object_is_misuse) {
    bool was = abort_on_misuse();
    set_abort_on_misuse(false);
    self_ref on_stack(1);
    EXPECT_THROW((void)on_stack.shared_from_this(), misuse_error);
    set_abort_on_misuse(was);
}

TEST(lw_shared_ptr, const_conversion_and_comparisons) {
    auto a = make_lw_shared<int>(1);
    auto b = make_lw_shared<int>(2);
    lw_shared_ptr<const int> ca = a;
    EXPECT_EQ(a.use_count(), 2);
    EXPECT_TRUE(ca == a);
    EXPECT_FALSE(a == b);
    EXPECT_TRUE(a != b);
    EXPECT_EQ(a < b, a.get() < b.get());
    EXPECT_EQ(b < a, b.get() < a.get());
    lw_shared_ptr<const int> moved = std::move(a);
    EXPECT_EQ(moved.use_count(), 2);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move)
}

TEST(lw_shared_ptr, hashing_in_unordered_set) {
    tracked::reset_counts();
    {
        std::unordered_set<lw_shared_ptr<tracked>> set;
        std::vector<lw_shared_ptr<tracked>> all;
        for (int i = 0; i < 100; ++i) {
            all.push_back(make_lw_shared<tracked>(i));
            set.insert(all.back());
        }
        // Inserting copies of the same pointers adds nothing: identity, not value, is hashed.
        for (auto& p : all) {
            EXPECT_FALSE(set.insert(p).second);
        }
        EXPECT_EQ(set.size(), 100u);
        EXPECT_EQ(all[10].use_count(), 2);
        EXPECT_EQ(set.count(all[42]), 1u);
        EXPECT_EQ(set.count(make_lw_shared<tracked>(42)), 0u);
        EXPECT_EQ(std::hash<lw_shared_ptr<tracked>>()(all[3]), std::hash<tracked*>()(all[3].get()));
        set.erase(all[10]);
        EXPECT_EQ(all[10].use_count(), 1);
    }
    EXPECT_EQ(tracked::alive, 0);
    EXPECT_EQ(tracked::destroyed, 101);
}

TEST(lw_shared_ptr, constructor_exception_propagates_without_leak) {
    tracked::reset_counts();
    throws_on_construct::attempts = 0;
    EXPECT_THROW(make_lw_shared<throws_on_construct>(), std::runtime_error);
    EXPECT_EQ(throws_on_construct::attempts, 1);
    EXPECT_EQ(tracked::alive, 0);  // the member was unwound; ASan checks the memory
}

// ---------------------------------------------------------------------------------------------
// shared_ptr

TEST(shared_ptr, counts_and_single_destruction) {
    tracked::reset_counts();
    {
        auto p = make_shared<tracked>(3);
        EXPECT_EQ(p.use_count(), 1);
        auto q = p;
        auto r = q;
        EXPECT_EQ(p.use_count(), 3);
        q.reset();
        EXPECT_EQ(p.use_count(), 2);
        EXPECT_FALSE(q);
        EXPECT_EQ(q.use_count(), 0);
        EXPECT_EQ(tracked::destroyed, 0);
    }
    EXPECT_EQ(tracked::destroyed, 1);
    EXPECT_EQ(tracked::alive, 0);
}

TEST(shared_ptr, destruction_through_base_without_virtual_destructor) {
    plain_derived::destroyed = 0;
    {
        shared_ptr<plain_base> b = make_shared<plain_derived>();
        EXPECT_EQ(b->b, 1);
        auto d = static_pointer_cast<plain_derived>(b);
        EXPECT_EQ(d->s, "derived");
        EXPECT_EQ(b.use_count(), 2);
        d.reset();
        EXPECT_EQ(plain_derived::destroyed, 0);
    }
    EXPECT_EQ(plain_derived::destroyed, 1);
}

TEST(shared_ptr, polymorphic_casts) {
    shared_ptr<poly_base> a = make_shared<poly_a>();
    shared_ptr<poly_base> b = make_shared<poly_b>();
    EXPECT_EQ(a->id(), 1);
    EXPECT_EQ(b->id(), 2);

    auto as_a = dynamic_pointer_cast<poly_a>(a);
    ASSERT_TRUE(as_a);
    EXPECT_EQ(as_a.get(), a.get());
    EXPECT_EQ(a.use_count(), 2);

    auto wrong = dynamic_pointer_cast<poly_a>(b);
    EXPECT_FALSE(wrong);
    EXPECT_EQ(b.use_count(), 1);  // a failed cast takes no reference

    auto back = static_pointer_cast<poly_base>(as_a);
    EXPECT_EQ(back, a);
    EXPECT_EQ(a.use_count(), 3);

    shared_ptr<const poly_base> c = a;
    auto nc = const_pointer_cast<poly_base>(c);
    EXPECT_EQ(nc.get(), a.get());
    EXPECT_EQ(a.use_count(), 5);

    // Moving static cast transfers the reference instead of adding one.
    auto moved = static_pointer_cast<poly_a>(std::move(back));
    EXPECT_FALSE(back);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(a.use_count(), 5);
    EXPECT_EQ(moved->id(), 1);
}

TEST(shared_ptr, multiple_inheritance_pointer_adjustment) {
    both::destroyed = 0;
    {
        auto p = make_shared<both>();
        shared_ptr<right_part> r = p;
        EXPECT_NE(static_cast<void*>(r.get()), static_cast<void*>(p.get()));
        EXPECT_EQ(r->r, 22);
        p.reset();
        auto back = dynamic_pointer_cast<both>(r);
        ASSERT_TRUE(back);
        EXPECT_EQ(back->l, 11);
        auto l = dynamic_pointer_cast<left_part>(r);  // cross cast
        ASSERT_TRUE(l);
        EXPECT_EQ(l->l, 11);
        EXPECT_EQ(r.use_count(), 3);
    }
    EXPECT_EQ(both::destroyed, 1);
}

TEST(shared_ptr, moves_and_self_assignment) {
    tracked::reset_counts();
    auto p = make_shared<tracked>(1);
    auto& alias = p;
    p = alias;
    EXPECT_EQ(p.use_count(), 1);
    p = std::move(alias);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->value, 1);
    shared_ptr<tracked> q(std::move(p));
    EXPECT_FALSE(p);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(q.use_count(), 1);
    q = make_shared<tracked>(2);
    EXPECT_EQ(tracked::destroyed, 1);
    q = nullptr;
    EXPECT_EQ(tracked::destroyed, 2);
    EXPECT_EQ(tracked::alive, 0);
}

TEST(shared_ptr, enable_shared_from_this) {
    node::destroyed = 0;
    {
        auto p = make_shared<node>(4);
        auto q = p->shared_from_this();
        EXPECT_EQ(q, p);
        EXPECT_EQ(p.use_count(), 2);
        auto w = p->weak_from_this();
        EXPECT_EQ(w.lock(), p);
        // Works through a derived class too: the link is found from make_shared<derived_node>.
        shared_ptr<derived_node> d = make_shared<derived_node>();
        shared_ptr<node> dn = d->shared_from_this();
        EXPECT_EQ(dn.get(), static_cast<node*>(d.get()));
        EXPECT_EQ(d.use_count(), 2);
    }
    EXPECT_EQ(node::destroyed, 2);

    node on_stack(1);
    EXPECT_THROW((void)on_stack.shared_from_this(), std::bad_weak_ptr);
    EXPECT_TRUE(on_stack.weak_from_this().expired());
    // A copy of a managed object is a new, unmanaged object.
    auto p = make_shared<node>(2);
    node copy(*p);
    EXPECT_THROW((void)copy.shared_from_this(), std::bad_weak_ptr);
}

TEST(shared_ptr, constructor_exception_propagates_without_leak) {
    tracked::reset_counts();
    EXPECT_THROW(make_shared<throws_on_construct>(), std::runtime_error);
    EXPECT_EQ(tracked::alive, 0);
}

TEST(shared_ptr, hashing_in_unordered_set) {
    std::unordered_set<shared_ptr<poly_base>> set;
    auto a = make_shared<poly_a>();
    shared_ptr<poly_base> a_base = a;
    set.insert(a_base);
    set.insert(make_shared<poly_b>());
    EXPECT_FALSE(set.insert(a_base).second);
    EXPECT_EQ(set.size(), 2u);
    EXPECT_EQ(set.count(a_base), 1u);
    EXPECT_EQ(a.use_count(), 3);
    set.clear();
    EXPECT_EQ(a.use_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// weak_ptr

TEST(weak_ptr, lock_and_expiry) {
    tracked::reset_counts();
    weak_ptr<tracked> w;
    EXPECT_TRUE(w.expired());
    EXPECT_FALSE(w.lock());
    {
        auto p = make_shared<tracked>(8);
        w = p;
        EXPECT_FALSE(w.expired());
        EXPECT_EQ(w.use_count(), 1);  // weak references are not owners
        {
            auto l = w.lock();
            ASSERT_TRUE(l);
            EXPECT_EQ(l->value, 8);
            EXPECT_EQ(p.use_count(), 2);
        }
        EXPECT_EQ(p.use_count(), 1);
    }
    // The object is gone exactly once even though the control block survives for w.
    EXPECT_EQ(tracked::destroyed, 1);
    EXPECT_EQ(tracked::alive, 0);
    EXPECT_TRUE(w.expired());
    EXPECT_EQ(w.use_count(), 0);
    EXPECT_FALSE(w.lock());
    auto w2 = w;  // copying an expired weak_ptr keeps it expired
    EXPECT_TRUE(w2.expired());
    w.reset();
    EXPECT_TRUE(w2.expired());
}  // ASan reports a leak or a double free here if the control block is mismanaged

TEST(weak_ptr, conversions_and_moves) {
    both::destroyed = 0;
    auto p = make_shared<both>();
    weak_ptr<right_part> wr = p;
    weak_ptr<both> wb = p;
    weak_ptr<right_part> wr2 = wb;
    EXPECT_EQ(wr.lock().get(), wr2.lock().get());
    EXPECT_EQ(wr.lock()->r, 22);
    weak_ptr<right_part> moved(std::move(wr));
    EXPECT_TRUE(wr.expired());  // NOLINT(bugprone-use-after-move): moved-from weak_ptr is empty
    EXPECT_FALSE(moved.expired());
    auto& alias = moved;
    moved = alias;
    moved = std::move(alias);
    EXPECT_FALSE(moved.expired());
    p.reset();
    EXPECT_EQ(both::destroyed, 1);
    EXPECT_TRUE(moved.expired());
    // Converting from an expired weak_ptr to a base must not touch the dead object.
    weak_ptr<left_part> wl = wb;
    EXPECT_TRUE(wl.expired());
    EXPECT_FALSE(wl.lock());
}

TEST(weak_ptr, control_block_outlives_object_and_cycles_break) {
    parent::destroyed = 0;
    weak_ptr<child> wc;
    {
        auto par = make_shared<parent>();
        par->down = make_shared<child>();
        par->down->up = par;
        wc = par->down;
        EXPECT_EQ(par->down->up.lock(), par);
    }
    EXPECT_EQ(parent::destroyed, 1);  // the weak back-pointer did not keep the parent alive
    EXPECT_TRUE(wc.expired());
}

TEST(weak_ptr, owner_before_orders_by_control_block) {
    auto a = make_shared<both>();
    shared_ptr<right_part> ar = a;
    auto b = make_shared<both>();
    // Aliases of one object are equivalent under owner order even though their addresses differ.
    EXPECT_FALSE(a.owner_before(ar));
    EXPECT_FALSE(ar.owner_before(a));
    EXPECT_NE(a.owner_before(b), b.owner_before(a));
    weak_ptr<both> wa = a;
    EXPECT_FALSE(wa.owner_before(ar));
    EXPECT_FALSE(ar.owner_before(wa));
}
